// Command fakeapache stands in for the Java processes of an apache/rocketmq image in
// rmqcontainer's tests, where no image can be pulled. "fakeapache broker -n ADDR -c FILE" checks
// its arguments, prints the broker.conf and JVM settings it was given, and serves minirmq on
// 10911 (like mqbroker, it registers its container address until told otherwise).
// "fakeapache namesrv" forwards 9876 to the broker, which answers name server requests too.
// Together with the image's start script they exercise rmqcontainer's apache layout end to end.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

const brokerListen = "0.0.0.0:10911"

func main() {
	if len(os.Args) < 2 {
		fail("usage: fakeapache namesrv | broker -n ADDR -c FILE")
	}
	switch os.Args[1] {
	case "namesrv":
		namesrv()
	case "broker":
		broker(os.Args[2:])
	default:
		fail("unknown role %q", os.Args[1])
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fakeapache: "+format+"\n", args...)
	os.Exit(1)
}

func broker(args []string) {
	if len(args) != 4 || args[0] != "-n" || args[2] != "-c" {
		fail("broker wants -n ADDR -c FILE, got %q", args)
	}
	fmt.Printf("fakeapache: name server %s\n", args[1])
	f, err := os.Open(args[3])
	if err != nil {
		fail("%v", err)
	}
	conf := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fmt.Printf("fakeapache: conf %s\n", sc.Text())
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			conf[k] = v
		}
	}
	f.Close()
	if conf["brokerName"] == "" {
		fail("broker.conf has no brokerName")
	}
	for _, k := range []string{"MAX_POSSIBLE_HEAP", "JAVA_OPT_EXT"} {
		fmt.Printf("fakeapache: env %s=%s\n", k, os.Getenv(k))
	}
	opts := []minirmq.Option{minirmq.WithAddr(brokerListen)}
	if n, err := strconv.Atoi(conf["defaultTopicQueueNums"]); err == nil {
		opts = append(opts, minirmq.WithQueueNums(n))
	}
	srv, err := minirmq.New(opts...)
	if err != nil {
		fail("%v", err)
	}
	fmt.Printf("The broker[%s, %s] boot success.\n", conf["brokerName"], srv.BrokerAddr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	_ = srv.Close()
}

func namesrv() {
	ln, err := net.Listen("tcp", "0.0.0.0:9876")
	if err != nil {
		fail("%v", err)
	}
	fmt.Println("The Name Server boot success.")
	for {
		c, err := ln.Accept()
		if err != nil {
			fail("%v", err)
		}
		go forward(c)
	}
}

// forward pipes a name server connection to the broker, waiting for it to come up.
func forward(c net.Conn) {
	defer c.Close()
	var b net.Conn
	var err error
	for range 100 {
		if b, err = net.Dial("tcp", "127.0.0.1:10911"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return
	}
	defer b.Close()
	go func() { _, _ = io.Copy(b, c); _ = b.(*net.TCPConn).CloseWrite() }()
	_, _ = io.Copy(c, b)
}
