// SPDX-License-Identifier: Apache-2.0
/* connbench: new TCP connections per second. Keeps CONC non-blocking sockets
 * in flight; each one connects to IP:PORT, waits for the server's one-byte
 * greeting (so a proxy that accepts early still has to reach the backend),
 * then closes with SO_LINGER 0 (RST: no TIME_WAIT on the client) and is
 * replaced. A connection stuck for 2 s is abandoned and counted as a timeout.
 * Prints "ok <n> err <n> timeout <n> secs <s> cps <rate> cpu_ns <own CPU time>".
 * usage: connbench IP PORT CONC SECS      Part of bench/vortex-compare.sh. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXC 4096

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sockaddr_in dst;
static int ep;
static int fds[MAXC];
static double born[MAXC];
static unsigned long long ok, err, tmo;

static void open_slot(int i)
{
	for (;;) {
		int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (s < 0) {
			perror("socket");
			exit(1);
		}
		struct linger lg = {1, 0};
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		int r = connect(s, (struct sockaddr *)&dst, sizeof dst);
		if (r < 0 && errno != EINPROGRESS) {
			err++;
			close(s);
			continue;
		}
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
		epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
		fds[i] = s;
		born[i] = now();
		return;
	}
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s IP PORT CONC SECS\n", argv[0]);
		return 2;
	}
	dst.sin_family = AF_INET;
	dst.sin_port = htons((uint16_t)atoi(argv[2]));
	inet_pton(AF_INET, argv[1], &dst.sin_addr);
	int conc = atoi(argv[3]);
	if (conc < 1 || conc > MAXC)
		conc = 64;
	double secs = atof(argv[4]);
	ep = epoll_create1(0);
	double start = now(), end = start + secs, last_scan = start;
	for (int i = 0; i < conc; i++)
		open_slot(i);
	struct epoll_event evs[256];
	for (;;) {
		double t = now();
		if (t >= end)
			break;
		int n = epoll_wait(ep, evs, 256, 50);
		for (int k = 0; k < n; k++) {
			int i = (int)evs[k].data.u32;
			char b[16];
			ssize_t r = read(fds[i], b, sizeof b);
			if (r > 0 && b[0] == 'x')
				ok++;
			else if (r < 0 && errno == EAGAIN)
				continue; /* spurious */
			else
				err++;
			close(fds[i]);
			open_slot(i);
		}
		if (t - last_scan > 0.25) {
			last_scan = t;
			for (int i = 0; i < conc; i++)
				if (t - born[i] > 2.0) {
					tmo++;
					close(fds[i]);
					open_slot(i);
				}
		}
	}
	double el = now() - start;
	struct timespec cpu;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
	printf("ok %llu err %llu timeout %llu secs %.3f cps %.0f cpu_ns %lld\n", ok, err, tmo, el, ok / el,
	       (long long)cpu.tv_sec * 1000000000LL + cpu.tv_nsec);
	return 0;
}
