// Package minirmq is an in-process Apache RocketMQ name server and broker for tests, in the spirit
// of miniredis: one Go server on 127.0.0.1 speaking RocketMQ's remoting protocol well enough that
// the unmodified rocketmq-client-go (and the Java client) cannot tell it from a real broker for
// sending, pulling, push and orderly consumption, delays, retries, dead letters and transactions.
//
// Messages live in memory. Restart keeps them, so tests can bounce the broker under a client;
// WithDataDir also keeps them on disk, so a new server (a new process, a restarted container)
// starts where the last one stopped or was killed.
package minirmq

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// EnvNameServer names the environment variable that points tests at an external broker.
const EnvNameServer = "ROCKETMQ_NAMESRV"

// Server is a running minirmq name server and broker.
type Server struct {
	cfg config

	mu          sync.Mutex
	store       *store
	clients     *clientRegistry
	locks       map[string]map[mqKey]lockEntry
	halfs       map[int64]*halfMessage
	sched       *scheduler
	advertised  *net.TCPAddr // brokerIP1 + listenPort as clients see it
	brokerConf  map[string]string
	brokerWrite bool
	keepClosed  time.Duration // KeepClosedConsumers

	lnMu      sync.Mutex
	ln        net.Listener
	addr      string // the bound host:port, stable across Restart
	conns     map[*conn]struct{}
	paused    bool
	closed    bool
	stop      chan struct{} // closed by Close: ends background loops
	closeDone chan struct{} // closed when the first Close has finished
	connWG    sync.WaitGroup
	loopWG    sync.WaitGroup
	opaqueID  atomic.Int32

	started  time.Time
	gotCount atomic.Int64 // messages returned by pulls, for runtime stats

	persist *persistence // nil without WithDataDir
}

type config struct {
	addr          string
	advertised    string
	queueNums     int
	timeScale     float64
	autoCreate    bool
	maxBodySize   int
	logger        *slog.Logger
	txTimeout     time.Duration
	txInterval    time.Duration
	txMaxChecks   int
	lockTTL       time.Duration
	clusterName   string
	brokerName    string
	suspendMaxDur time.Duration
	acl           map[string]string // access key -> secret key; nil when ACL is off
	retainBytes   int64
	retainAge     time.Duration
	dataDir       string
	segmentSize   int64
}

// Option configures a Server.
type Option func(*config)

// WithAddr sets the listen address (default 127.0.0.1:0, a random port).
func WithAddr(addr string) Option { return func(c *config) { c.addr = addr } }

// WithAdvertisedAddr sets the broker address put in routes, as brokerIP1 plus listenPort do on a
// real broker: use it when clients reach the broker through a port mapping.
func WithAdvertisedAddr(hostport string) Option { return func(c *config) { c.advertised = hostport } }

// WithQueueNums sets the read and write queue count of auto-created topics (default 4).
func WithQueueNums(n int) Option { return func(c *config) { c.queueNums = n } }

// WithTimeScale multiplies every broker-side wait: delay levels, retry delays and transaction
// check-back timing. 0.01 turns the 10 s first retry into 100 ms. Default 1.
func WithTimeScale(f float64) Option { return func(c *config) { c.timeScale = f } }

// WithAutoCreateTopics controls autoCreateTopicEnable (default true, as the quickstart broker).
func WithAutoCreateTopics(on bool) Option { return func(c *config) { c.autoCreate = on } }

// WithMaxMessageSize sets maxMessageSize (default 4 MiB, as the real broker).
func WithMaxMessageSize(n int) Option { return func(c *config) { c.maxBodySize = n } }

// WithRetention bounds what the broker keeps, as the real broker's file reservation does:
// the oldest messages are dropped once the stored bytes exceed maxBytes or once they are older
// than maxAge (zero disables a bound). Queues' min offsets move past dropped messages, and
// consumers behind them are moved forward. Default: keep everything.
func WithRetention(maxBytes int64, maxAge time.Duration) Option {
	return func(c *config) { c.retainBytes, c.retainAge = maxBytes, maxAge }
}

// WithDataDir keeps the broker's state in dir (created when missing): the commit log, topics,
// queue and consumer offsets, pending delays and transactions, and broker config changed at
// runtime (UPDATE_BROKER_CONFIG, so an advertised address set by a container wrapper survives a
// restart, as a real broker rewrites its broker.conf). A server started on the same directory
// continues from it. Each message reaches the directory before its send is answered, so a
// killed process loses no acknowledged message. The rest is saved every second and on Close,
// so a killed process repeats what happened after the last save, as a real broker does with
// its periodically flushed offsets: messages consumed since are delivered again, a delayed
// message delivered since is delivered again, a half message rolled back since is checked back
// again. Duplicates, never losses. One server at a time may use a directory. Broker config
// saved there takes precedence over WithAdvertisedAddr on the next start, as a real broker's
// rewritten broker.conf does. Default: memory only.
func WithDataDir(dir string) Option { return func(c *config) { c.dataDir = dir } }

// WithLogger sets where the server reports dropped connections and malformed frames.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithTransactionCheck sets how long a half message waits before the first check-back, the
// interval between check-backs and how many are made before it is rolled back (real broker:
// 6 s, 60 s, 15). The durations are scaled by WithTimeScale.
func WithTransactionCheck(timeout, interval time.Duration, maxChecks int) Option {
	return func(c *config) { c.txTimeout, c.txInterval, c.txMaxChecks = timeout, interval, maxChecks }
}

func (c *config) setDefaults() {
	if c.addr == "" {
		c.addr = "127.0.0.1:0"
	}
	if c.queueNums <= 0 {
		c.queueNums = 4
	}
	if c.timeScale <= 0 {
		c.timeScale = 1
	}
	if c.maxBodySize <= 0 {
		c.maxBodySize = 4 << 20
	}
	if c.logger == nil {
		c.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.txTimeout <= 0 {
		c.txTimeout = 6 * time.Second
	}
	if c.txInterval <= 0 {
		c.txInterval = 60 * time.Second
	}
	if c.txMaxChecks <= 0 {
		c.txMaxChecks = 15
	}
	c.lockTTL = 60 * time.Second
	c.clusterName = "DefaultCluster"
	c.brokerName = "broker-a"
	c.suspendMaxDur = 30 * time.Second
}

// scaled applies the time scale to a broker-side wait.
func (s *Server) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.cfg.timeScale)
}

// New starts a server. Close it when done.
func New(opts ...Option) (*Server, error) {
	cfg := config{autoCreate: true}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.setDefaults()
	s := &Server{
		cfg:         cfg,
		store:       newStore(),
		clients:     newClientRegistry(),
		locks:       map[string]map[mqKey]lockEntry{},
		halfs:       map[int64]*halfMessage{},
		brokerConf:  map[string]string{},
		brokerWrite: true,
		conns:       map[*conn]struct{}{},
		stop:        make(chan struct{}),
		closeDone:   make(chan struct{}),
		started:     time.Now(),
	}
	s.sched = newScheduler()
	s.store.createTopic(defaultTopic, cfg.queueNums, cfg.queueNums, permRW|permInherit)
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("minirmq: listen on %s: %w", cfg.addr, err)
	}
	s.ln = ln
	s.addr = ln.Addr().String()
	adv := cfg.advertised
	if adv == "" {
		adv = defaultAdvertised(ln.Addr().(*net.TCPAddr))
	}
	if s.advertised, err = resolveAdvertised(adv); err != nil {
		ln.Close()
		return nil, err
	}
	if cfg.dataDir != "" {
		if s.persist, err = s.openDataDir(cfg.dataDir); err != nil {
			ln.Close()
			return nil, err
		}
		s.store.wal = s.persist.log
		s.loopWG.Add(1)
		go s.checkpointLoop()
	}
	s.loopWG.Add(3)
	go s.scheduleLoop()
	go s.transactionCheckLoop()
	go s.retentionLoop()
	s.startAccepting(ln)
	return s, nil
}

// defaultAdvertised is the listen address, or, when listening on all interfaces, this host's
// first non-loopback IPv4 address, as the real broker picks brokerIP1.
func defaultAdvertised(listen *net.TCPAddr) string {
	if !listen.IP.IsUnspecified() {
		return listen.String()
	}
	host := "127.0.0.1"
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				host = ipn.IP.String()
				break
			}
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(listen.Port))
}

// retentionLoop drops messages past their age; the byte budget is enforced on every append.
func (s *Server) retentionLoop() {
	defer s.loopWG.Done()
	if s.cfg.retainAge <= 0 {
		<-s.stop
		return
	}
	ticker := time.NewTicker(min(max(s.cfg.retainAge/10, 10*time.Millisecond), time.Second))
	defer ticker.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-ticker.C:
			s.mu.Lock()
			s.store.enforceRetention(0, s.cfg.retainAge, now)
			s.mu.Unlock()
		}
	}
}

func resolveAdvertised(hostport string) (*net.TCPAddr, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("minirmq: advertised address %q: %w", hostport, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("minirmq: advertised address %q: invalid port", hostport)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return nil, fmt.Errorf("minirmq: advertised address %q: cannot resolve host", hostport)
		}
		ip = ips[0]
	}
	return &net.TCPAddr{IP: ip, Port: port}, nil
}

// Run starts a server for a test and closes it when the test ends.
func Run(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatalf("minirmq: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// NameServer returns the name server tests should use: $ROCKETMQ_NAMESRV when it is set (a real
// broker), otherwise the address of a minirmq started with Run.
func NameServer(t testing.TB, opts ...Option) string {
	t.Helper()
	if addr := os.Getenv(EnvNameServer); addr != "" {
		return addr
	}
	return Run(t, opts...).Addr()
}

// Addr is the name server address, which is also the broker address: host:port.
func (s *Server) Addr() string { return s.addr }

// BrokerAddr is the broker address clients are told to use in routes (the advertised address).
func (s *Server) BrokerAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.advertised.String()
}

// Close stops the server: listener, connections and background loops, then, with a data
// directory, saves the checkpoint and releases the directory. It is idempotent.
func (s *Server) Close() error {
	s.lnMu.Lock()
	if s.closed {
		s.lnMu.Unlock()
		<-s.closeDone // a Close in progress elsewhere: return once it is done
		return nil
	}
	s.closed = true
	close(s.stop)
	s.stopServingLocked()
	s.lnMu.Unlock()
	defer close(s.closeDone)
	s.connWG.Wait()
	s.loopWG.Wait()
	return s.closePersistence()
}

// Restart drops every connection and listens again on the same address, keeping topics,
// messages, offsets, pending delays and transactions, as a broker restart with its store would.
func (s *Server) Restart() error {
	s.Pause()
	return s.Resume()
}

// Pause makes the broker unreachable: it stops listening and closes every connection (after
// answering the requests it had received, as a broker shutting down does), so clients see
// connection refused until Resume.
func (s *Server) Pause() {
	s.lnMu.Lock()
	if !s.closed && !s.paused {
		s.paused = true
		s.stopServingLocked()
	}
	s.lnMu.Unlock()
	s.connWG.Wait()
}

// Resume listens again on the address the server had.
func (s *Server) Resume() error {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.closed {
		return errors.New("minirmq: resume after Close")
	}
	if !s.paused {
		return nil
	}
	var (
		ln  net.Listener
		err error
	)
	// The old socket may linger briefly after close; retry for a moment.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("minirmq: listen again on %s: %w", s.addr, err)
	}
	s.paused = false
	s.ln = ln
	s.startAccepting(ln)
	return nil
}

// DropConnections closes every client connection; the server keeps listening, so clients
// reconnect on their next request.
func (s *Server) DropConnections() {
	s.lnMu.Lock()
	for c := range s.conns {
		c.close()
	}
	s.lnMu.Unlock()
}

// stopServingLocked closes the listener and all connections. Requires lnMu.
func (s *Server) stopServingLocked() {
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.stopReading()
	}
}

func (s *Server) startAccepting(ln net.Listener) {
	s.connWG.Add(1)
	go func() {
		defer s.connWG.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.lnMu.Lock()
			if s.ln != ln {
				s.lnMu.Unlock()
				nc.Close()
				return
			}
			c := newConn(s, nc)
			s.conns[c] = struct{}{}
			s.connWG.Add(1)
			s.lnMu.Unlock()
			go func() {
				defer s.connWG.Done()
				c.serve()
				s.lnMu.Lock()
				delete(s.conns, c)
				s.lnMu.Unlock()
				s.connectionClosed(c)
			}()
		}
	}()
}

// conn is one client connection. Requests are handled in arrival order on the read goroutine;
// only long-polling pulls wait on their own goroutine, answering out of order by opaque as the
// protocol allows.
type conn struct {
	srv    *Server
	nc     net.Conn
	remote *net.TCPAddr
	// wmu guards bw. Replies made on the read goroutine are buffered and flushed once no further
	// request is already buffered, so a burst of pipelined requests costs one write syscall.
	wmu     sync.Mutex
	bw      *bufio.Writer
	done    chan struct{}
	once    sync.Once
	waiters sync.WaitGroup
	// serializeType is the header encoding the client last used; broker-initiated requests use it.
	serializeType atomic.Uint32
	// stopping is set once the server stops serving the connection (stopReading).
	stopping atomic.Bool
	// held are the messages sends on this connection stored and hold back from pulls until
	// their replies are written (queue.held, releaseHeld). Only the read goroutine, which handles
	// sends, touches it.
	held []heldMessage
}

func newConn(s *Server, nc net.Conn) *conn {
	ra, _ := nc.RemoteAddr().(*net.TCPAddr)
	return &conn{srv: s, nc: nc, remote: ra, bw: bufio.NewWriterSize(nc, 64<<10), done: make(chan struct{})}
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

// stopReading ends the connection as a broker shutting down does: the request being handled
// and those already read into the connection's buffer are answered and the replies sent before
// it closes, so a client does not see a failed send for a message that was stored. Nothing more
// is read from the socket (shutting down only the read side would not stop a client that keeps
// sending), and the last replies get a short write deadline, so Close, Pause and Restart return
// promptly even under a client that pipelines requests or never reads. DropConnections, which
// simulates a network failure, closes at once instead.
func (c *conn) stopReading() {
	c.stopping.Store(true)
	if c.nc.SetReadDeadline(time.Now()) != nil {
		c.close()
	}
}

func (c *conn) serve() {
	defer func() {
		c.releaseHeld()
		c.flush()
		c.close()
		c.waiters.Wait()
	}()
	r := bufio.NewReaderSize(c.nc, 64<<10)
	// Handlers copy what they keep (stored messages are re-encoded), so one read buffer serves
	// every frame of the connection.
	var buf []byte
	for {
		cmd, err := readFrameInto(r, &buf)
		if err != nil {
			if errors.Is(err, errFrame) {
				c.srv.cfg.logger.Warn("minirmq: closing connection", "remote", c.nc.RemoteAddr().String(), "reason", err.Error())
			}
			return
		}
		if cmd.isResponse() {
			// Replies to our notifications and check-backs carry nothing we wait for.
			continue
		}
		c.serializeType.Store(uint32(cmd.serializeType))
		if resp := c.srv.handle(c, cmd); resp != nil {
			c.buffer(prepareReply(cmd, resp), false)
		}
		if r.Buffered() == 0 || c.pendingReplyBytes() >= replyFlushBytes {
			// Nothing more to answer right now, or a client with a steady stream of requests
			// (many producers on one connection) would wait for its replies too long.
			c.releaseHeld()
			c.flush()
		}
	}
}

// releaseHeld shows the messages this connection's sends stored to pulls and wakes the pulls
// waiting on their queues. The read goroutine calls it right before it writes the replies: a
// producer that got its reply can pull its message at once, and a woken pull (another goroutine,
// then a write on another connection) reaches its consumer after the reply has left.
func (c *conn) releaseHeld() {
	if len(c.held) == 0 {
		return
	}
	c.srv.mu.Lock()
	for _, h := range c.held {
		h.q.release(h.offset)
	}
	for i, h := range c.held {
		if i == 0 || h.q != c.held[i-1].q { // a burst usually fills one queue
			h.q.wake()
		}
	}
	c.srv.mu.Unlock()
	clear(c.held)
	c.held = c.held[:0]
}

// prepareReply makes resp the response to req.
func prepareReply(req, resp *command) *command {
	resp.Opaque = req.Opaque
	resp.Flag |= flagResponse
	resp.serializeType = req.serializeType
	if resp.Language == "" {
		resp.Language = "JAVA"
	}
	if resp.Version == 0 {
		resp.Version = req.Version
	}
	return resp
}

// reply sends resp as the response to req at once (replies made off the read goroutine).
func (c *conn) reply(req, resp *command) {
	c.buffer(prepareReply(req, resp), true)
}

func (c *conn) write(cmd *command) { c.buffer(cmd, true) }

// buffer queues a frame and writes everything queued when flush is set.
// replyFlushBytes bounds the replies a connection holds back while more requests are already
// buffered: about a dozen send replies, enough to save most syscalls under load without
// letting a reply wait behind a long burst.
const replyFlushBytes = 4 << 10

func (c *conn) pendingReplyBytes() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.bw.Buffered()
}

func (c *conn) buffer(cmd *command, flush bool) {
	frame, err := encodeFrame(cmd)
	if err != nil {
		c.srv.cfg.logger.Error("minirmq: encoding frame", "err", err)
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err = c.bw.Write(frame); err == nil && flush {
		err = c.flushLocked()
	}
	if err != nil {
		c.close()
	}
}

func (c *conn) flush() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.flushLocked(); err != nil {
		c.close()
	}
}

// stoppingWriteTimeout bounds the last replies of a connection the server stops serving: a
// client that does not read them must not hold up Close.
const stoppingWriteTimeout = time.Second

func (c *conn) flushLocked() error {
	if c.bw.Buffered() == 0 {
		return nil
	}
	timeout := 10 * time.Second
	if c.stopping.Load() {
		timeout = stoppingWriteTimeout
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	return c.bw.Flush()
}

// send makes a broker-initiated request (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE).
func (c *conn) send(code int16, ext map[string]string, body []byte) {
	c.write(&command{Code: code, Language: "JAVA", Version: 401, Opaque: c.srv.opaqueID.Add(1), ExtFields: ext,
		Body: body, serializeType: byte(c.serializeType.Load())})
}
