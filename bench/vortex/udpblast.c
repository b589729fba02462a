// SPDX-License-Identifier: Apache-2.0
/* udpblast: send minimum-size (60-byte frame, 64 on the wire with FCS) UDP/IPv4
 * packets through an AF_PACKET socket with PACKET_QDISC_BYPASS and sendmmsg,
 * cycling the UDP source port over NFLOWS values so a load balancer sees many
 * flows. Checksum: IPv4 header computed, UDP checksum 0 ("none", valid for IPv4),
 * so nothing depends on checksum offload. After SECS seconds prints
 * "sent <n> secs <s> pps <rate> fails <n> cpu_ns <own on-CPU time>".
 *
 * usage: udpblast IFNAME DST_MAC SRC_IP DST_IP DPORT NFLOWS SECS
 * Part of bench/vortex-compare.sh. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME 60
#define BATCH 64

static uint16_t csum(const void *p, int len)
{
	const uint16_t *w = p;
	uint32_t s = 0;
	for (; len > 1; len -= 2)
		s += *w++;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: %s IFNAME DST_MAC SRC_IP DST_IP DPORT NFLOWS SECS\n", argv[0]);
		return 2;
	}
	const char *ifname = argv[1];
	unsigned m[6];
	if (sscanf(argv[2], "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
		fprintf(stderr, "bad mac\n");
		return 2;
	}
	int dport = atoi(argv[5]), nflows = atoi(argv[6]);
	double secs = atof(argv[7]);
	if (nflows < 1 || nflows > 60000)
		nflows = 1024;

	int fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	int one = 1;
	if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0)
		perror("PACKET_QDISC_BYPASS (continuing)");
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
		perror("SIOCGIFHWADDR");
		return 1;
	}
	struct sockaddr_ll sll = {0};
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_IP);
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
		perror("bind");
		return 1;
	}

	static uint8_t frames[BATCH][FRAME];
	static struct iovec iov[BATCH];
	static struct mmsghdr msgs[BATCH];
	for (int i = 0; i < BATCH; i++) {
		uint8_t *f = frames[i];
		memset(f, 0, FRAME);
		struct ether_header *eh = (void *)f;
		for (int k = 0; k < 6; k++)
			eh->ether_dhost[k] = (uint8_t)m[k];
		memcpy(eh->ether_shost, ifr.ifr_hwaddr.sa_data, 6);
		eh->ether_type = htons(ETH_P_IP);
		struct iphdr *ip = (void *)(f + 14);
		ip->version = 4;
		ip->ihl = 5;
		ip->tot_len = htons(FRAME - 14);
		ip->ttl = 64;
		ip->protocol = IPPROTO_UDP;
		inet_pton(AF_INET, argv[3], &ip->saddr);
		inet_pton(AF_INET, argv[4], &ip->daddr);
		ip->check = csum(ip, 20);
		struct udphdr *uh = (void *)(f + 34);
		uh->dest = htons((uint16_t)dport);
		uh->len = htons(FRAME - 34);
		iov[i].iov_base = f;
		iov[i].iov_len = FRAME;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}

	unsigned long long sent = 0, fails = 0;
	unsigned flow = (unsigned)getpid() * 7919u;
	double start = now(), end = start + secs;
	for (unsigned long iter = 0;; iter++) {
		if ((iter & 63) == 0 && now() >= end)
			break;
		for (int i = 0; i < BATCH; i++) {
			struct udphdr *uh = (void *)(frames[i] + 34);
			uh->source = htons((uint16_t)(10000 + (flow++ % (unsigned)nflows)));
		}
		int n = sendmmsg(fd, msgs, BATCH, 0);
		if (n > 0)
			sent += (unsigned)n;
		else
			fails++;
	}
	double el = now() - start;
	struct timespec cpu;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
	/* cpu_ns: this process's on-CPU time, including the softirq work (the
	 * veth/bridge/LB chain) that ran in its context. */
	printf("sent %llu secs %.3f pps %.0f fails %llu cpu_ns %lld\n", sent, el, sent / el, fails,
	       (long long)cpu.tv_sec * 1000000000LL + cpu.tv_nsec);
	return 0;
}
