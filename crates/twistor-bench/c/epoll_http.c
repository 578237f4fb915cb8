/*
 * A minimal epoll HTTP responder: the ceiling the twistor HTTP benchmarks compare against.
 *
 * Usage: epoll_http PORT   (listens on 127.0.0.1:PORT; PORT 0 lets the OS choose)
 * Prints "epoll http listening on PORT" once listening.
 *
 * It parses just enough to count requests: every "\r\n\r\n" ends one (bodies are not
 * supported), matched across reads, so pipelined requests each get an answer. Every
 * request gets the same `200 OK` with `Hello, world!\n` and the headers twistor's hello
 * server sends (`Content-Type`, `Server`, `Date` refreshed once a second, `Content-Length`).
 *
 * One thread, each socket registered once, edge-triggered, no epoll_ctl in steady state.
 * A connection reads until a short read into one shared buffer, and answers everything a
 * read completed with one write. A short write keeps the rest in a per-connection buffer
 * and stops reading that connection until an EPOLLOUT edge says the socket drained.
 */
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
#include <time.h>
#include <unistd.h>

#define READ_BUF (64 * 1024)
#define MAX_EVENTS 256

struct conn {
    int fd;
    int match; /* how many bytes of "\r\n\r\n" the input ends with */
    char *pending; /* bytes the socket did not take yet, or NULL */
    size_t pending_len;
    size_t pending_off;
};

static char buf[READ_BUF];
static char *out;        /* responses for one read */
static size_t out_cap;

static char response[256];
static size_t response_len;
static time_t response_time = -1;

/* Rebuilds the response when the second changes (for its Date field). */
static void refresh_response(void) {
    time_t now = time(NULL);
    if (now == response_time) return;
    response_time = now;
    struct tm tm;
    gmtime_r(&now, &tm);
    char date[64];
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    response_len = (size_t)snprintf(response, sizeof response,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nserver: c-epoll\r\n"
        "date: %s\r\ncontent-length: 14\r\n\r\nHello, world!\n", date);
}

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

/* Counts the requests "\r\n\r\n" ends in data, carrying a partial match across reads. */
static size_t count_requests(struct conn *c, const char *data, size_t len) {
    static const char term[4] = {'\r', '\n', '\r', '\n'};
    size_t count = 0;
    int m = c->match;
    const char *p = data, *end = data + len;
    while (p < end) {
        if (m == 0) {
            /* Skip to the next CR; most bytes are not one. */
            p = memchr(p, '\r', (size_t)(end - p));
            if (p == NULL) break;
        }
        if (*p == term[m]) {
            m++;
            if (m == 4) { count++; m = 0; }
        } else {
            m = *p == '\r' ? 1 : 0;
        }
        p++;
    }
    c->match = m;
    return count;
}

static int answer(struct conn *c, size_t requests) {
    if (requests == 0) return 0;
    refresh_response();
    size_t need = requests * response_len;
    if (need > out_cap) {
        free(out);
        out_cap = need * 2;
        out = malloc(out_cap);
        if (out == NULL) { out_cap = 0; return -1; }
    }
    for (size_t i = 0; i < requests; i++) memcpy(out + i * response_len, response, response_len);
    return conn_write(c, out, need);
}

static void conn_event(struct conn *c) {
    if (c->pending != NULL) {
        int r = conn_flush(c);
        if (r < 0) { conn_close(c); return; }
        if (r > 0) return; /* still full: wait for the next EPOLLOUT edge */
    }
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n > 0) {
            int r = answer(c, count_requests(c, buf, (size_t)n));
            if (r < 0) { conn_close(c); return; }
            if (r > 0) return; /* the EPOLLOUT edge resumes reading */
            if ((size_t)n < sizeof buf) return; /* a short read drained the socket */
            continue;
        }
        if (n == 0) { conn_close(c); return; }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        conn_close(c);
        return;
    }
}

int main(int argc, char **argv) {
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
    printf("epoll http listening on %d\n", ntohs(addr.sin_port));
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
