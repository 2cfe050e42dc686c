package rmqcontainer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Label is set on every container this package starts, so leftovers can be found with
// `docker ps --filter label=org.rocketbus.rmqcontainer`.
const Label = "org.rocketbus.rmqcontainer"

// Layout says which processes and ports an image has.
type Layout int

const (
	// LayoutAuto inspects the image: one exposing 10911/tcp or setting ROCKETMQ_HOME is an
	// apache/rocketmq image; any other is treated as single-port. An image that is not present
	// locally is judged by name (a name ending in "minirmq" is single-port).
	LayoutAuto Layout = iota
	// LayoutSinglePort is one process serving name server and broker on 9876 (cmd/minirmq).
	LayoutSinglePort
	// LayoutApache is an apache/rocketmq 4.9.x or 5.x image: this package starts mqnamesrv on
	// 9876 and mqbroker on 10911 in the one container.
	LayoutApache
)

// String names the layout as WithLayout's documentation and error messages do.
func (l Layout) String() string {
	switch l {
	case LayoutAuto:
		return "auto"
	case LayoutSinglePort:
		return "single-port"
	case LayoutApache:
		return "apache"
	}
	return fmt.Sprintf("Layout(%d)", int(l))
}

// Option configures Run.
type Option func(*settings)

type settings struct {
	layout         Layout
	brokerConfig   map[string]string
	heap           string
	jvmOptions     []string
	startupTimeout time.Duration
	hostIP         string
	dockerfile     *testcontainers.FromDockerfile
	keepImage      bool
	customizers    []testcontainers.ContainerCustomizer
	logger         log.Logger
	hostPorts      map[string]string // container port ("9876/tcp") -> fixed host port
	errs           []error
}

// WithBrokerConfig adds broker.conf entries (for example "defaultTopicQueueNums": "8"); they
// override this package's defaults (a single ASYNC_MASTER named broker-a with
// autoCreateTopicEnable and autoCreateSubscriptionGroup on). On single-port images, which have
// no config file, the entries are sent with the UPDATE_BROKER_CONFIG request after start
// instead; minirmq applies those it implements.
func WithBrokerConfig(cfg map[string]string) Option {
	return func(s *settings) {
		if err := validateProperties(cfg); err != nil {
			s.errs = append(s.errs, err)
			return
		}
		if s.brokerConfig == nil {
			s.brokerConfig = map[string]string{}
		}
		maps.Copy(s.brokerConfig, cfg)
	}
}

// WithJVMHeap sets the heap of the name server and of the broker JVM each (for example "512m"
// or "1g"; default 512m), through the variables the images' scripts read (MAX_POSSIBLE_HEAP in
// older images, HEAP_OPTS in newer ones, and JAVA_OPT_EXT, which comes last on the command line
// in both). The images otherwise take a quarter of the machine's memory or 2g each and pre-touch
// it. Single-port images ignore it.
func WithJVMHeap(size string) Option {
	return func(s *settings) {
		if _, err := parseHeap(size); err != nil {
			s.errs = append(s.errs, err)
			return
		}
		s.heap = size
	}
}

// WithJVMOptions appends options to both JVMs' command lines (through JAVA_OPT_EXT, after the
// heap flags), e.g. "--add-opens" flags for images that run RocketMQ 4.x on Java 17.
// Single-port images ignore them.
func WithJVMOptions(opts ...string) Option {
	return func(s *settings) {
		for _, o := range opts {
			if strings.ContainsAny(o, "\n\r") {
				s.errs = append(s.errs, fmt.Errorf("rmqcontainer: JVM option %q contains a line break", o))
				return
			}
		}
		s.jvmOptions = append(s.jvmOptions, opts...)
	}
}

// WithSinglePort declares the image a single-port one (name server and broker on 9876, as
// cmd/minirmq), skipping detection.
func WithSinglePort() Option { return WithLayout(LayoutSinglePort) }

// WithLayout sets the image layout instead of detecting it.
func WithLayout(l Layout) Option {
	return func(s *settings) {
		if l < LayoutAuto || l > LayoutApache {
			s.errs = append(s.errs, fmt.Errorf("rmqcontainer: unknown layout %d", int(l)))
			return
		}
		s.layout = l
	}
}

// WithStartupTimeout bounds the wait for the broker to register with its name server and to
// advertise the host-side address (default 1 minute for single-port images, 3 minutes for
// apache/rocketmq images, whose JVMs are slow to start).
func WithStartupTimeout(d time.Duration) Option {
	return func(s *settings) {
		if d <= 0 {
			s.errs = append(s.errs, fmt.Errorf("rmqcontainer: startup timeout must be positive, got %v", d))
			return
		}
		s.startupTimeout = d
	}
}

// WithHostIP binds the mapped ports to this host address and advertises it to clients; 0.0.0.0
// binds all interfaces and advertises the default host. By default ports bind to 127.0.0.1 and
// 127.0.0.1 is advertised when the Docker engine runs on this machine; otherwise ports bind to
// all interfaces and testcontainers' Docker host is advertised (TESTCONTAINERS_HOST_OVERRIDE
// sets it).
func WithHostIP(ip string) Option {
	return func(s *settings) {
		// Brokers write their address as ip:port without brackets, so IPv6 cannot be advertised.
		if parsed := net.ParseIP(ip); parsed == nil || parsed.To4() == nil {
			s.errs = append(s.errs, fmt.Errorf("rmqcontainer: host IP %q is not an IPv4 address", ip))
			return
		}
		s.hostIP = ip
	}
}

// WithHostPort publishes containerPort on hostPort of the host instead of on a port Docker
// picks: 9876 (name server, and broker on single-port images) on every layout, 10911 and 10909
// (broker) on apache/rocketmq images. Docker picks new host ports each time a container starts,
// but RocketMQ clients keep the name server address they were given and a broker keeps
// advertising the address it was told, so a container that is restarted (Restart) while clients
// use it needs every published port fixed. hostPort must be free on the host: Run fails
// otherwise.
func WithHostPort(containerPort, hostPort int) Option {
	return func(s *settings) {
		if containerPort < 1 || containerPort > 65535 || hostPort < 1 || hostPort > 65535 {
			s.errs = append(s.errs, fmt.Errorf("rmqcontainer: WithHostPort(%d, %d): ports must be in 1..65535", containerPort, hostPort))
			return
		}
		if s.hostPorts == nil {
			s.hostPorts = map[string]string{}
		}
		s.hostPorts[fmt.Sprintf("%d/tcp", containerPort)] = fmt.Sprint(hostPort)
	}
}

// WithDockerfile builds the image from contextDir/dockerfile (dockerfile "" means "Dockerfile")
// before starting it; Run's image argument must then be empty. The image is removed by
// Terminate unless WithKeepImage is given.
func WithDockerfile(contextDir, dockerfile string) Option {
	return func(s *settings) {
		if contextDir == "" {
			s.errs = append(s.errs, errors.New("rmqcontainer: WithDockerfile needs a context directory"))
			return
		}
		s.dockerfile = &testcontainers.FromDockerfile{Context: contextDir, Dockerfile: dockerfile}
	}
}

// WithKeepImage keeps an image built by WithDockerfile after Terminate.
func WithKeepImage() Option { return func(s *settings) { s.keepImage = true } }

// WithCustomizers passes testcontainers customizers through (environment, networks, log
// consumers...). They are applied after this package's settings, so they can override them.
func WithCustomizers(c ...testcontainers.ContainerCustomizer) Option {
	return func(s *settings) { s.customizers = append(s.customizers, c...) }
}

// WithLogger sends testcontainers' progress messages (creating, starting, waiting...) to
// logger instead of the standard logger; log.TestLogger(t) puts them in the test's output.
func WithLogger(logger log.Logger) Option {
	return func(s *settings) {
		if logger == nil {
			s.errs = append(s.errs, errors.New("rmqcontainer: WithLogger needs a logger"))
			return
		}
		s.logger = logger
	}
}

// Container is a running RocketMQ name server and broker whose broker advertises an address
// reachable from the host. It embeds the testcontainers container for logs, exec and the like.
type Container struct {
	*testcontainers.DockerContainer

	layout      Layout
	host        string
	builtImage  string // image built by WithDockerfile, removed on Terminate
	removeImage bool

	// What Restart needs to wait for the broker and advertise it again.
	timeout      time.Duration
	brokerConfig map[string]string
	logger       log.Logger

	terminateOnce sync.Once
	terminateErr  error
}

// A Container works with testcontainers' helpers (testcontainers.CleanupContainer and the like).
var _ testcontainers.Container = (*Container)(nil)

// Layout is the layout the container was started with (never LayoutAuto).
func (c *Container) Layout() Layout { return c.layout }

// NameServer returns the name server address (host:port) for clients outside Docker.
func (c *Container) NameServer(ctx context.Context) (string, error) {
	return c.hostPort(ctx, nameServerPort)
}

// BrokerAddr returns the broker address (host:port) clients outside Docker use; it is what the
// name server's routes carry.
func (c *Container) BrokerAddr(ctx context.Context) (string, error) {
	if c.layout == LayoutSinglePort {
		return c.hostPort(ctx, nameServerPort)
	}
	return c.hostPort(ctx, brokerPort)
}

// addrs returns the host-side name server and broker addresses.
func (c *Container) addrs(ctx context.Context) (nameServer, broker string, err error) {
	if nameServer, err = c.NameServer(ctx); err != nil {
		return "", "", err
	}
	if broker, err = c.BrokerAddr(ctx); err != nil {
		return "", "", err
	}
	return nameServer, broker, nil
}

// hostPort looks the mapping up each time: a restarted container gets new host ports.
func (c *Container) hostPort(ctx context.Context, port string) (string, error) {
	p, err := c.MappedPort(ctx, port)
	if err != nil {
		return "", fmt.Errorf("rmqcontainer: mapped port for %s: %w", port, err)
	}
	return net.JoinHostPort(c.host, p.Port()), nil
}

// Restart restarts the container as `docker restart` does (SIGTERM, then SIGKILL after Docker's
// 10 s), waits until the broker has registered with the name server again, and makes sure the
// name server lists it at the address clients outside Docker reach: a broker that kept the
// advertised address across the restart (minirmq with its data directory, a broker that persists
// its runtime config) is left alone, one that forgot it is told again, as Run does. Messages and
// offsets survive only if the broker keeps them on disk inside the container.
//
// Docker publishes a restarted container on new host ports unless WithHostPort fixed them:
// NameServer and BrokerAddr then return the new addresses, and clients still holding the old
// name server address cannot reconnect.
func (c *Container) Restart(ctx context.Context) error {
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return fmt.Errorf("rmqcontainer: restart: %w", err)
	}
	defer p.Close()
	if _, err := p.Client().ContainerRestart(ctx, c.GetContainerID(), client.ContainerRestartOptions{}); err != nil {
		return fmt.Errorf("rmqcontainer: restart: %w", err)
	}
	registered := &registeredStrategy{host: c.host, timeout: c.timeout}
	if err := registered.WaitUntilReady(ctx, c.DockerContainer); err != nil {
		return fmt.Errorf("rmqcontainer: after restart: %w", err)
	}
	nameServer, broker, err := c.addrs(ctx)
	if err != nil {
		return err
	}
	body, err := clusterInfo(ctx, nameServer)
	if err != nil {
		return fmt.Errorf("rmqcontainer: after restart: %w", err)
	}
	if _, found := registeredBroker(body, broker); found {
		c.logger.Printf("rmqcontainer: restarted %s; the broker kept advertising %s", shortID(c.GetContainerID()), broker)
		return nil
	}
	c.logger.Printf("rmqcontainer: restarted %s; the broker forgot its advertised address (cluster info: %s), advertising %s again", shortID(c.GetContainerID()), body, broker)
	return c.advertise(ctx, c.timeout, c.brokerConfig)
}

// shortID is the 12-character container id `docker ps` shows.
func shortID(id string) string { return id[:min(12, len(id))] }

// Terminate stops and removes the container, and the image built by WithDockerfile unless it
// was kept. Calling it again returns nil.
func (c *Container) Terminate(ctx context.Context, opts ...testcontainers.TerminateOption) error {
	c.terminateOnce.Do(func() {
		c.terminateErr = terminate(ctx, c.DockerContainer, c.builtImage, c.removeImage, opts...)
	})
	return c.terminateErr
}

// terminate removes the container (when not nil) and then the built image (when asked).
func terminate(ctx context.Context, ctr *testcontainers.DockerContainer, image string, removeImage bool, opts ...testcontainers.TerminateOption) error {
	var errs []error
	if ctr != nil {
		if err := ctr.Terminate(ctx, opts...); err != nil {
			errs = append(errs, fmt.Errorf("rmqcontainer: terminate container: %w", err))
		}
	}
	if removeImage && image != "" {
		if err := removeBuiltImage(ctx, image); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func removeBuiltImage(ctx context.Context, image string) error {
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return fmt.Errorf("rmqcontainer: remove image %s: %w", image, err)
	}
	defer p.Close()
	if _, err := p.Client().ImageRemove(ctx, image, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
		return fmt.Errorf("rmqcontainer: remove image %s: %w", image, err)
	}
	return nil
}

// Run starts a RocketMQ container from image (an apache/rocketmq 4.9.x or 5.x image, or one
// built from cmd/minirmq), waits until its broker is registered, points the broker's advertised
// address at the host side of the port mapping and waits until the name server's routes carry
// it. Without that last step clients would be sent to the container's internal IP.
//
// Terminate the container when done. On machines where testcontainers' reaper image cannot be
// pulled, set TESTCONTAINERS_RYUK_DISABLED=true.
func Run(ctx context.Context, image string, opts ...Option) (*Container, error) {
	s := settings{heap: "512m"}
	for _, o := range opts {
		if o != nil {
			o(&s)
		}
	}
	if err := errors.Join(s.errs...); err != nil {
		return nil, err
	}
	switch {
	case image == "" && s.dockerfile == nil:
		return nil, errors.New("rmqcontainer: no image given")
	case image != "" && s.dockerfile != nil:
		return nil, fmt.Errorf("rmqcontainer: image %q and WithDockerfile are exclusive", image)
	}

	var providerOpts []testcontainers.DockerProviderOption
	if s.logger != nil {
		providerOpts = append(providerOpts, testcontainers.WithLogger(s.logger))
	}
	provider, err := testcontainers.NewDockerProvider(providerOpts...)
	if err != nil {
		return nil, fmt.Errorf("rmqcontainer: docker: %w", err)
	}
	defer provider.Close()

	c := &Container{removeImage: !s.keepImage}
	if s.dockerfile != nil {
		req := testcontainers.ContainerRequest{FromDockerfile: *s.dockerfile}
		if image, err = provider.BuildImage(ctx, &req); err != nil {
			return nil, fmt.Errorf("rmqcontainer: build image from %s: %w", s.dockerfile.Context, err)
		}
		c.builtImage = image
	}
	fail := func(ctr *testcontainers.DockerContainer, err error) (*Container, error) {
		// Clean up with a fresh context: ctx may be what just expired.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return nil, errors.Join(err, terminate(cctx, ctr, c.builtImage, c.removeImage))
	}

	c.layout = s.layout
	if c.layout == LayoutAuto {
		c.layout = detectLayout(ctx, provider.Client(), image)
	}
	var bindIP string
	c.host, bindIP, err = resolveHost(ctx, provider, s.hostIP)
	if err != nil {
		return fail(nil, err)
	}
	timeout := s.startupTimeout
	if timeout == 0 {
		timeout = time.Minute
		if c.layout == LayoutApache {
			timeout = 3 * time.Minute
		}
	}

	ports := []string{nameServerPort}
	if c.layout == LayoutApache {
		ports = append(ports, brokerPort, brokerVIPPort)
	}
	for p := range s.hostPorts {
		if !slices.Contains(ports, p) {
			return fail(nil, fmt.Errorf("rmqcontainer: WithHostPort(%s): the %s layout publishes only %s", strings.TrimSuffix(p, "/tcp"), c.layout, strings.Join(ports, ", ")))
		}
	}
	c.timeout, c.brokerConfig, c.logger = timeout, s.brokerConfig, s.logger
	if c.logger == nil {
		c.logger = log.Default()
	}
	customizers := []testcontainers.ContainerCustomizer{
		testcontainers.WithLabels(map[string]string{Label: "true"}),
		testcontainers.WithExposedPorts(ports...),
	}
	if s.logger != nil {
		customizers = append([]testcontainers.ContainerCustomizer{testcontainers.WithLogger(s.logger)}, customizers...)
	}
	if bindIP != "" || len(s.hostPorts) > 0 {
		customizers = append(customizers, testcontainers.WithHostConfigModifier(bindPorts(bindIP, ports, s.hostPorts)))
	}
	registered := &registeredStrategy{host: c.host, timeout: timeout}
	switch c.layout {
	case LayoutSinglePort:
		customizers = append(customizers, testcontainers.WithWaitStrategyAndDeadline(timeout, registered))
	case LayoutApache:
		heap, _ := parseHeap(s.heap) // validated by WithJVMHeap or the default
		// Overriding the entrypoint also drops the image's CMD (Docker's rule), so the images'
		// own entrypoint scripts and default commands stay out of the way.
		customizers = append(customizers,
			testcontainers.WithEntrypoint("sh", "-c", apacheStartScript),
			testcontainers.WithEnv(apacheEnv(brokerConfigText(s.brokerConfig), heap, s.jvmOptions)),
			testcontainers.WithWaitStrategyAndDeadline(timeout, registered))
	}
	customizers = append(customizers, s.customizers...)

	ctr, err := testcontainers.Run(ctx, image, customizers...)
	if err != nil {
		return fail(ctr, fmt.Errorf("rmqcontainer: start %s (%s layout): %w", image, c.layout, err))
	}
	c.DockerContainer = ctr

	if err := c.advertise(ctx, timeout, s.brokerConfig); err != nil {
		return fail(ctr, err)
	}
	return c, nil
}

// advertise points the broker's address in routes at the host side of the mapping. brokerIP1
// and listenPort change the registered address; brokerPermission in the same request makes a
// real broker re-register at once instead of at its next 30 s heartbeat.
func (c *Container) advertise(ctx context.Context, timeout time.Duration, extra map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nameServer, broker, err := c.addrs(ctx)
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(broker)
	props := map[string]string{}
	if c.layout == LayoutSinglePort {
		// No config file to put these in: apply them at runtime.
		maps.Copy(props, extra)
	}
	maps.Copy(props, map[string]string{"brokerIP1": host, "listenPort": port, "brokerPermission": "6"})

	var lastErr error
	updated := false
	for {
		if !updated {
			if lastErr = updateBrokerConfig(ctx, broker, props); lastErr == nil {
				updated = true
			}
		}
		if updated {
			var body string
			if body, lastErr = clusterInfo(ctx, nameServer); lastErr == nil {
				if _, found := registeredBroker(body, broker); found {
					return nil
				}
				lastErr = fmt.Errorf("name server still lists the broker at another address: %s", body)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rmqcontainer: broker did not advertise %s within %v: %w", broker, timeout, lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// bindPorts publishes ports on one host address ("" = all interfaces), each on its port in fixed
// or else on a port Docker picks.
func bindPorts(ip string, ports []string, fixed map[string]string) func(*container.HostConfig) {
	var addr netip.Addr // the zero address binds all interfaces
	if ip != "" {
		addr = netip.MustParseAddr(ip) // checked by resolveHost
	}
	return func(hc *container.HostConfig) {
		if hc.PortBindings == nil {
			hc.PortBindings = network.PortMap{}
		}
		for _, p := range ports {
			hostPort := "0"
			if f, ok := fixed[p]; ok {
				hostPort = f
			}
			hc.PortBindings[network.MustParsePort(p)] = []network.PortBinding{{HostIP: addr, HostPort: hostPort}}
		}
	}
}

// resolveHost picks the address clients use to reach mapped ports and the host IP to bind them
// to ("" = all interfaces). Binding to loopback keeps test brokers off the network, but only
// works when the engine shares this machine's loopback: its socket is local and it reports this
// machine's host name. testcontainers' own guess is not used then: inside a container it picks
// a gateway address, which is wrong when the engine runs in that same container.
func resolveHost(ctx context.Context, p *testcontainers.DockerProvider, hostIP string) (host, bindIP string, err error) {
	if hostIP != "" && !net.ParseIP(hostIP).IsUnspecified() {
		return hostIP, hostIP, nil
	}
	_, override := os.LookupEnv("TESTCONTAINERS_HOST_OVERRIDE")
	if !override && engineIsLocal(ctx, p) {
		if hostIP != "" { // explicitly all interfaces
			return "127.0.0.1", "", nil
		}
		return "127.0.0.1", "127.0.0.1", nil
	}
	h, err := p.DaemonHost(ctx)
	if err != nil {
		return "", "", fmt.Errorf("rmqcontainer: docker host: %w", err)
	}
	h = loopbackToIP(h)
	if ip := net.ParseIP(h); hostIP == "" && ip != nil && ip.IsLoopback() {
		// Docker Desktop and similar forward loopback bindings from their VM.
		return h, "127.0.0.1", nil
	}
	return h, "", nil
}

// loopbackToIP turns "localhost" into 127.0.0.1: brokers put the address in routes verbatim,
// and "localhost" may resolve to ::1, where Docker may not publish.
func loopbackToIP(h string) string {
	if h == "localhost" {
		return "127.0.0.1"
	}
	return h
}

func engineIsLocal(ctx context.Context, p *testcontainers.DockerProvider) bool {
	u, err := url.Parse(p.Client().DaemonHost())
	if err != nil || (u.Scheme != "unix" && u.Scheme != "npipe") {
		return false
	}
	info, err := p.Client().Info(ctx, client.InfoOptions{})
	if err != nil {
		return false
	}
	name, err := os.Hostname()
	return err == nil && info.Info.Name == name
}

// detectLayout implements LayoutAuto.
func detectLayout(ctx context.Context, cli client.APIClient, image string) Layout {
	inspect, err := cli.ImageInspect(ctx, image)
	if err != nil || inspect.Config == nil {
		return layoutFromName(image)
	}
	return layoutFromConfig(inspect.Config.ExposedPorts, inspect.Config.Env)
}

func layoutFromConfig(exposed map[string]struct{}, env []string) Layout {
	if _, ok := exposed[brokerPort]; ok {
		return LayoutApache
	}
	for _, e := range env {
		if strings.HasPrefix(e, "ROCKETMQ_HOME=") {
			return LayoutApache
		}
	}
	return LayoutSinglePort
}

func layoutFromName(image string) Layout {
	name := image
	if i := strings.LastIndex(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	if strings.HasSuffix(name, "minirmq") {
		return LayoutSinglePort
	}
	return LayoutApache
}

// registeredStrategy waits until the name server lists a broker: the moment clients can get a
// route. A port check alone is not enough (Docker's proxy accepts connections before the
// process listens, and the broker registers seconds after the name server is up).
type registeredStrategy struct {
	host    string
	timeout time.Duration
}

func (r *registeredStrategy) Timeout() *time.Duration { return &r.timeout }

func (r *registeredStrategy) WaitUntilReady(ctx context.Context, target wait.StrategyTarget) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var lastErr error
	for {
		if err := checkRunning(ctx, target); err != nil {
			return err
		}
		if p, err := target.MappedPort(ctx, nameServerPort); err != nil {
			lastErr = err
		} else {
			var body string
			if body, lastErr = clusterInfo(ctx, net.JoinHostPort(r.host, p.Port())); lastErr == nil {
				if ok, _ := registeredBroker(body, ""); ok {
					return nil
				}
				lastErr = errNoBroker
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for broker registration: %w (last: %v)", ctx.Err(), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkRunning fails fast when the container died (a broken start script, an OOM kill) instead of
// polling until the timeout.
func checkRunning(ctx context.Context, target wait.StrategyTarget) error {
	st, err := target.State(ctx)
	if err != nil {
		return fmt.Errorf("container state: %w", err)
	}
	if !st.Running {
		return fmt.Errorf("container is %s (exit code %d, OOM killed %v)", st.Status, st.ExitCode, st.OOMKilled)
	}
	return nil
}
