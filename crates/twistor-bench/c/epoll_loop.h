/*
 * What the two C epoll servers (epoll_echo.c, epoll_http.c) share: one thread, a listener
 * on 127.0.0.1, each socket registered once, edge-triggered (EPOLLIN|EPOLLOUT|EPOLLRDHUP),
 * no epoll_ctl in steady state, one shared read buffer, and a per-connection buffer for
 * what a short write left.
 *
 * A server includes this, defines conn_event (called on every event of a connection), and
 * has main return serve(argc, argv, "NAME"). twistor-bench writes this file next to the
 * server's source before compiling it.
 */
#ifndef EPOLL_LOOP_H
#define EPOLL_LOOP_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF (64 * 1024)
#define MAX_EVENTS 256

struct conn {
    int fd;
    int state; /* the protocol's parsing state across reads (HTTP: see epoll_http.c) */
    char *pending; /* bytes the socket did not take yet, or NULL */
    size_t pending_len;
    size_t pending_off;
};

static char buf[READ_BUF];

static void conn_close(struct conn *c) {
    close(c->fd); /* also removes it from the epoll set */
    free(c->pending);
    free(c);
}

/* Returns 0 when everything owed was written, 1 when the socket is full, -1 on error. */
static int conn_flush(struct conn *c) {
    while (c->pending_off < c->pending_len) {
        ssize_t n = write(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 1;
            return -1;
        }
        c->pending_off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->pending_len = c->pending_off = 0;
    return 0;
}

/* Writes data, keeping what the socket does not take. Same results as conn_flush. */
static int conn_write(struct conn *c, const char *data, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(c->fd, data + off, len - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            return -1;
        }
        off += (size_t)n;
    }
    if (off == len) return 0;
    c->pending = malloc(len - off);
    if (c->pending == NULL) return -1;
    memcpy(c->pending, data + off, len - off);
    c->pending_len = len - off;
    c->pending_off = 0;
    return 1;
}

/* Handles an event on connection c: defined by the server. */
static void conn_event(struct conn *c);

/*
 * Listens on 127.0.0.1:PORT (argv[1]; 0 lets the OS choose), prints
 * "epoll NAME listening on PORT", and serves until killed.
 */
static int serve(int argc, char **argv, const char *name) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) { perror("socket"); return 1; }
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("bind"); return 1; }
    if (listen(lfd, 4096) < 0) { perror("listen"); return 1; }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("epoll %s listening on %d\n", name, ntohs(addr.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) { perror("epoll_create1"); return 1; }
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLET;
    ev.data.ptr = NULL; /* NULL marks the listener */
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break; /* EAGAIN, or a transient error: the next edge retries */
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    if (c == NULL) { close(fd); continue; }
                    c->fd = fd;
                    struct epoll_event cev;
                    cev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
                    cev.data.ptr = c;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0) { close(fd); free(c); }
                }
            } else {
                conn_event(events[i].data.ptr);
            }
        }
    }
}

#endif
