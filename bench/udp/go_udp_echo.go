// Go UDP echo server for bench/udp: one goroutine looping on
// ReadFromUDPAddrPort / WriteToUDPAddrPort on a *net.UDPConn (the forms
// that take and return a netip.AddrPort by value, so the loop allocates
// nothing; ReadFrom / WriteTo allocate a *UDPAddr per datagram). A
// goroutine that finds no datagram parks in Go's netpoller (edge-triggered
// epoll). run.sh runs it with GOMAXPROCS=1.
//
// Usage: go_udp_echo ADDRESS   (host:port); prints "listening on <host:port>".
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: %s ADDRESS\n", os.Args[0])
		os.Exit(2)
	}
	addr, err := net.ResolveUDPAddr("udp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c, err := net.ListenUDP("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", c.LocalAddr()) // os.Stdout is unbuffered
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue // e.g. ECONNREFUSED for an earlier reply: not fatal for UDP
		}
		c.WriteToUDPAddrPort(buf[:n], from) // a failed reply is a lost datagram
	}
}
