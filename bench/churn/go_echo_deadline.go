// Go twin of bench/churn/np_echo_deadline.c: one goroutine per connection
// reading into a 4 KiB buffer and writing each chunk back, with -d a read
// deadline set before every Read and a write deadline before every Write
// (now + 30 s, never reached). bench/churn/run.sh runs it with GOMAXPROCS=1.
//
// Usage: go_echo_deadline [-d] ADDRESS; prints "listening on <host:port>".
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

const timeout = 30 * time.Second

var deadlines = flag.Bool("d", false, "set a read and a write deadline before every Read and Write")

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		if *deadlines {
			c.SetReadDeadline(time.Now().Add(timeout))
		}
		n, err := c.Read(buf)
		if n > 0 {
			if *deadlines {
				c.SetWriteDeadline(time.Now().Add(timeout))
			}
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
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintf(os.Stderr, "usage: %s [-d] ADDRESS\n", os.Args[0])
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}
