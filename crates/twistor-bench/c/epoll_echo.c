/*
 * A minimal epoll echo server: the ceiling the twistor benchmarks compare against.
 *
 * Usage: epoll_echo PORT   (listens on 127.0.0.1:PORT; PORT 0 lets the OS choose)
 * Prints "epoll echo listening on PORT" once listening.
 *
 * One thread, each socket registered once, edge-triggered (EPOLLIN|EPOLLOUT|EPOLLRDHUP),
 * no epoll_ctl in steady state. On every event a connection first flushes what it still
 * owes, then reads until EAGAIN into one shared buffer and writes each chunk straight back.
 * A short write keeps the rest in a per-connection buffer and stops reading that connection
 * (back-pressure) until an EPOLLOUT edge says the socket drained. An idle connection costs
 * one small struct.
 */
#include "epoll_loop.h"

static void conn_event(struct conn *c) {
    if (c->pending != NULL) {
        int r = conn_flush(c);
        if (r < 0) { conn_close(c); return; }
        if (r > 0) return; /* still full: wait for the next EPOLLOUT edge */
    }
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n > 0) {
            int r = conn_write(c, buf, (size_t)n);
            if (r < 0) { conn_close(c); return; }
            if (r > 0) return; /* the EPOLLOUT edge resumes reading */
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
    return serve(argc, argv, "echo");
}
