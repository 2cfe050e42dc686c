package faults

import (
	"bufio"
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rocketbus/rocketbus/testkit"
)

// The restart and SIGKILL cases never touch the shared Redis and PostgreSQL that
// scripts/test-services.sh starts: other packages' tests use them at the same time. They start
// a private server instead, a child process of this test on a free loopback port with its data
// in a temporary directory, and point the testkit backend at it through its address variable
// (REDIS_ADDR, POSTGRES_DSN), as the proxy of the cut and outage cases does.

// privateServer starts a private server for the named testkit backend (redis or postgres) and
// builds the suite's target on it: the testkit backend with its address variable pointing at
// the server, and a restart fault that stops the server cleanly and starts it again on the same
// port and data directory. The server is stopped (by its PID) when the test ends. Without the
// server binaries the case skips, or fails when CI=true (scripts/test-services.sh installs them
// there) unless the address variable names an external service, for which the script installs
// nothing.
func privateServer(t *testing.T, caseName, name string) (*brokerProcess, *target) {
	t.Helper()
	var (
		p          *brokerProcess
		env, value string
		newBackend func(testing.TB) testkit.Backend
		how        string
	)
	switch name {
	case "redis":
		p = redisServerProcess(t, caseName)
		env, value, newBackend = "REDIS_ADDR", p.addr, testkit.Redis
		how = "SIGTERM"
	case "postgres":
		var dsn string
		p, dsn = postgresProcess(t, caseName)
		env, value, newBackend = "POSTGRES_DSN", dsn, testkit.PostgreSQL
		how = "fast shutdown (SIGINT, what pg_ctl stop -m fast sends)"
	default:
		t.Fatalf("no private server for %s", name)
	}
	t.Setenv(env, value)
	tg := kitTarget(t, name, newBackend, false)
	var took time.Duration
	tg.restartSkip = ""
	tg.restart = func(t *testing.T) {
		began := time.Now()
		if err := p.stop(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		if err := p.start(); err != nil {
			t.Fatalf("starting %s again: %v", p.name, err)
		}
		took = time.Since(began)
		t.Logf("%s stopped by %s and answering again after %v", p.name, how, took.Round(time.Millisecond))
	}
	tg.restartNote = func() string {
		return fmt.Sprintf("private %s stopped by %s and started again on its port and data dir, answering %v later",
			p.name, how, took.Round(10*time.Millisecond))
	}
	return p, tg
}

// missingServer skips the case because a server binary is missing, or fails it when CI=true and
// the backend's address variable (envVar) is unset: then scripts/test-services.sh installed the
// server, so its absence is a defect.
func missingServer(t *testing.T, caseName, backend, envVar, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" && os.Getenv(envVar) == "" {
		t.Fatalf("%s; CI=true and %s is unset, so scripts/test-services.sh should have installed it", what, envVar)
	}
	skipCase(t, caseName, backend, what+" (scripts/test-services.sh installs it)")
}

// redisServerProcess starts redis-server on a free port with an append-only file fsynced before
// every reply (appendfsync always), so that what it acknowledged survives SIGKILL, and no
// snapshots.
func redisServerProcess(t *testing.T, caseName string) *brokerProcess {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missingServer(t, caseName, "redis", "REDIS_ADDR", "no redis-server on PATH")
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	p := &brokerProcess{name: "redis-server", addr: addr,
		argv: []string{bin, "--bind", "127.0.0.1", "--port", port, "--dir", dir,
			"--appendonly", "yes", "--appendfsync", "always", "--save", "",
			// No background rewrite: it forks a child, which would outlive a SIGKILL.
			"--auto-aof-rewrite-percentage", "0",
			"--daemonize", "no", "--logfile", ""},
		ready:      func() error { return redisPing(addr) },
		stopSignal: syscall.SIGTERM,
	}
	p.startOrFail(t)
	return p
}

// redisPing is nil when the server at addr answers PING (not while it loads its data).
func redisPing(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return errors.New("redis-server answered PING with " + line)
	}
	return nil
}

// postgresProcess creates a PostgreSQL cluster (initdb, trust authentication on loopback) in a
// temporary directory and starts its postmaster on a free port, with fsync and synchronous
// commit on. It returns the process and the DSN. As root, the server runs as the postgres system
// user (PostgreSQL refuses to run as root); otherwise as the test's own user.
//
// Killed with SIGKILL, the postmaster leaves its backends behind for a moment; they keep its
// shared memory, and a new postmaster refuses to start while they are attached. reap therefore
// kills with SIGKILL whatever process of this cluster is left (they are found by their working
// directory, the cluster's data directory, which only this cluster's processes have) and waits
// until they are gone.
func postgresProcess(t *testing.T, caseName string) (*brokerProcess, string) {
	t.Helper()
	binDir, err := postgresBinDir()
	if err != nil {
		missingServer(t, caseName, "postgres", "POSTGRES_DSN", err.Error())
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			missingServer(t, caseName, "postgres", "POSTGRES_DSN", "running as root and no postgres user to run PostgreSQL as: "+err.Error())
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parents are private to root, and the server may run as postgres.
	dir, err := os.MkdirTemp("", "faults-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) }) // after the server's cleanup, registered later
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	// -N: initdb does not fsync the new cluster's files (they are in the page cache, which
	// outlives the processes this test kills); the server itself runs with fsync on.
	initdb := exec.Command(filepath.Join(binDir, "initdb"), "-D", data, "-U", "rocketbus",
		"--auth=trust", "-E", "UTF8", "--locale=C", "-N")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dsn := fmt.Sprintf("postgres://rocketbus@%s/postgres?sslmode=disable", addr)
	p := &brokerProcess{name: "postgres", addr: addr,
		argv: []string{filepath.Join(binDir, "postgres"), "-D", data, "-p", port,
			"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + dir,
			"-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on",
			// Dynamic shared memory in the data directory, not /dev/shm: nothing outlives the
			// directory.
			"-c", "dynamic_shared_memory_type=mmap", "-c", "shared_buffers=32MB"},
		attr:       &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL},
		ready:      func() error { return postgresPing(dsn) },
		stopSignal: syscall.SIGINT, // fast shutdown
	}
	var reaped atomic.Int64 // processes besides the postmaster that reap killed last time
	p.reap = func(postmaster int) error {
		n, err := reapCluster(data, postmaster, 30*time.Second)
		reaped.Store(int64(n))
		return err
	}
	p.note = func() string {
		return fmt.Sprintf("%d of the cluster's processes outlived the postmaster and were killed", reaped.Load())
	}
	t.Cleanup(func() {
		// Runs after the server's own cleanup (registered by startOrFail, below): the postmaster
		// is gone, so whatever process of the cluster is left is killed, and when it did not
		// shut down cleanly its System V shared memory segment is removed.
		if _, err := reapCluster(data, 0, 30*time.Second); err != nil {
			t.Errorf("postgres: %v", err)
		}
		removeShm(t, data)
	})
	p.startOrFail(t)
	return p, dsn
}

// postgresBinDir is the newest /usr/lib/postgresql/<version>/bin with initdb and postgres, or
// the directory of initdb on PATH.
func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if initdb, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(initdb)
		if isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries (initdb and postgres) under /usr/lib/postgresql/*/bin or on PATH")
}

func pgVersion(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// postgresPing is nil when the server answers a query (not while it starts up or recovers).
func postgresPing(dsn string) error {
	db, err := stdsql.Open("postgres", dsn+"&connect_timeout=2")
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// reapCluster kills with SIGKILL every live process whose working directory is the data
// directory (the processes of that cluster: the postmaster changes into it, its children
// inherit it) and waits until none is left; it returns how many it found besides the process
// postmaster (0: none to leave out). Zombies count as gone: they hold no shared memory, and
// only their new parent can collect them.
func reapCluster(data string, postmaster int, timeout time.Duration) (int, error) {
	if real, err := filepath.EvalSymlinks(data); err == nil {
		data = real
	}
	deadline := time.Now().Add(timeout)
	found := map[int]bool{}
	for {
		pids := clusterProcesses(data)
		if len(pids) == 0 {
			return len(found), nil
		}
		for _, pid := range pids {
			if pid != postmaster {
				found[pid] = true
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return len(found), fmt.Errorf("processes of the cluster in %s still alive after %v: %v", data, timeout, pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func clusterProcesses(data string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err != nil || cwd != data {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone
		}
		// The state follows the command name in parentheses, which may contain spaces.
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// removeShm removes the System V shared memory segment named in the cluster's postmaster.pid,
// which is still there when the postmaster did not shut down cleanly (a clean shutdown removes
// it and the file). Only a segment that the postmaster of the file created (its cpid) and that
// nothing is attached to is removed.
func removeShm(t *testing.T, data string) {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return // clean shutdown
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return
	}
	postmaster := strings.TrimSpace(lines[0])
	f := strings.Fields(lines[6]) // "key id"
	if len(f) != 2 {
		return
	}
	if _, err := strconv.Atoi(f[1]); err != nil {
		return
	}
	out, err := exec.Command("ipcs", "-m", "-i", f[1]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nattch=0") ||
		!strings.Contains(string(out), "cpid="+postmaster+"\t") && !strings.Contains(string(out), "cpid="+postmaster+" ") {
		return
	}
	if out, err := exec.Command("ipcrm", "-m", f[1]).CombinedOutput(); err != nil {
		t.Logf("postgres: removing shared memory segment %s: %v %s", f[1], err, out)
	}
}
