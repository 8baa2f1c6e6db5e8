// Go net echo server for bench/echo: one goroutine per connection, each
// reading into its own 4 KiB buffer and writing every chunk straight back
// (the load sends 512-byte messages, one in flight per connection, so any
// buffer of 512 bytes or more makes the same system calls). Go sets
// TCP_NODELAY on accepted connections by default. run.sh runs it with
// GOMAXPROCS=1.
//
// Usage: go_echo ADDRESS   (host:port); prints "listening on <host:port>".
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: %s ADDRESS\n", os.Args[0])
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr()) // os.Stdout is unbuffered
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "accept:", err)
			time.Sleep(10 * time.Millisecond) // EMFILE and the like
			continue
		}
		go serve(c)
	}
}
