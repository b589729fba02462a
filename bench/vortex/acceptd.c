// SPDX-License-Identifier: Apache-2.0
/* acceptd: minimal TCP backend for the conns/s benchmark. Listens on
 * 0.0.0.0:PORT (so it also answers a VIP on lo, for DSR), and for every
 * connection writes one byte "x" and closes. Runs until killed.
 * usage: acceptd PORT        Part of bench/vortex-compare.sh. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 80;
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4096) < 0) {
		perror("bind/listen");
		return 1;
	}
	for (;;) {
		int c = accept4(l, NULL, NULL, 0);
		if (c < 0)
			continue;
		if (write(c, "x", 1) < 0) {
			/* peer gone: nothing to do */
		}
		close(c);
	}
}
