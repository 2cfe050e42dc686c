// Command minirmq runs the embedded RocketMQ name server and broker as a standalone dev server.
//
//	minirmq -listen 127.0.0.1:9876 -data-dir /var/lib/minirmq
//
// Point any RocketMQ client's name server at the listen address. SIGINT or SIGTERM stops it
// gracefully; SIGHUP restarts it in place (connections dropped, messages and offsets kept), which
// is how test suites simulate a broker restart from outside the process. With -data-dir the
// broker keeps its state on disk: a new process on the same directory, after a stop or a kill,
// continues from it. Without it everything is in memory and lost when the process ends.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "minirmq:", err)
		os.Exit(1)
	}
}

// run starts the server and serves until ctx ends or a stop signal arrives.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("minirmq", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "0.0.0.0:9876", "address to listen on (name server and broker share it)")
	advertise := fs.String("advertise", "", "broker address put in routes, host:port (default: the listen address; set it behind a port mapping)")
	queues := fs.Int("queues", 4, "read and write queues of auto-created topics")
	timeScale := fs.Float64("time-scale", 1, "multiplier for delay levels, retry delays and transaction checks")
	autoCreate := fs.Bool("auto-create-topics", true, "create topics on first send (autoCreateTopicEnable)")
	dataDir := fs.String("data-dir", "", "keep messages, offsets and topics in this directory across runs (default: memory only)")
	verbose := fs.Bool("v", false, "log dropped connections and malformed frames")
	var accounts []minirmq.Account
	fs.Func("acl", "enable ACL with an account, accessKey:secretKey (repeatable)", func(v string) error {
		ak, sk, ok := strings.Cut(v, ":")
		if !ok || ak == "" || sk == "" {
			return fmt.Errorf("want accessKey:secretKey, got %q", v)
		}
		accounts = append(accounts, minirmq.Account{AccessKey: ak, SecretKey: sk})
		return nil
	})
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until the server stops")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *queues <= 0 {
		return fmt.Errorf("-queues must be positive, got %d", *queues)
	}
	if *timeScale <= 0 {
		return fmt.Errorf("-time-scale must be positive, got %v", *timeScale)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	level := slog.LevelError
	if *verbose {
		level = slog.LevelDebug
	}
	opts := []minirmq.Option{
		minirmq.WithAddr(*listen),
		minirmq.WithQueueNums(*queues),
		minirmq.WithTimeScale(*timeScale),
		minirmq.WithAutoCreateTopics(*autoCreate),
		minirmq.WithLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))),
	}
	if len(accounts) > 0 {
		opts = append(opts, minirmq.WithACL(accounts...))
	}
	if *advertise != "" {
		opts = append(opts, minirmq.WithAdvertisedAddr(*advertise))
	}
	if *dataDir != "" {
		opts = append(opts, minirmq.WithDataDir(*dataDir))
	}
	srv, err := minirmq.New(opts...)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(stdout, "minirmq listening on %s (broker address %s)\n", srv.Addr(), srv.BrokerAddr())
	if *dataDir != "" {
		fmt.Fprintf(stdout, "minirmq: data in %s\n", *dataDir)
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(signals)
	for {
		select {
		case <-ctx.Done():
			return srv.Close()
		case sig := <-signals:
			if sig != syscall.SIGHUP {
				fmt.Fprintf(stdout, "minirmq: %v, stopping\n", sig)
				return srv.Close()
			}
			if err := srv.Restart(); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "minirmq: restarted")
		}
	}
}
