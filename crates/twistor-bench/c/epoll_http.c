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
#include "epoll_loop.h"

#include <time.h>

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

/* Counts the requests "\r\n\r\n" ends in data, carrying a partial match across reads. */
static size_t count_requests(struct conn *c, const char *data, size_t len) {
    static const char term[4] = {'\r', '\n', '\r', '\n'};
    size_t count = 0;
    int m = c->state; /* how many bytes of "\r\n\r\n" the input ends with */
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
    c->state = m;
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
    return serve(argc, argv, "http");
}
