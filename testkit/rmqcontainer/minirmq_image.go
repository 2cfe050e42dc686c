package rmqcontainer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/log"
)

// minirmqPackage is built into the image by MinirmqContext.
const minirmqPackage = "github.com/rocketbus/rocketbus/cmd/minirmq"

// MinirmqRepo is the repository of images MinirmqImage builds; the tag is a hash of the binary.
const MinirmqRepo = "rocketbus-rmqcontainer/minirmq"

// EnvImage names the environment variable RunTest reads when given no image: an image such as
// apache/rocketmq:5.3.1 to run instead of the locally built minirmq.
const EnvImage = "ROCKETMQ_IMAGE"

// EnvCI set to "true" turns RunTest's skip on a missing Docker engine into a failure, so CI
// cannot silently pass without running the container tests.
const EnvCI = "CI"

// MinirmqContext writes a Docker build context for cmd/minirmq into dir: the static binary,
// built with the go tool from the module that provides this package, and cmd/minirmq's
// Dockerfile (FROM scratch, so nothing is pulled). Use it with WithDockerfile(dir, "").
func MinirmqContext(ctx context.Context, dir string) error {
	src, err := goOutput(ctx, "list", "-f", "{{.Dir}}", minirmqPackage)
	if err != nil {
		return fmt.Errorf("rmqcontainer: locate %s: %w", minirmqPackage, err)
	}
	dockerfile, err := os.ReadFile(filepath.Join(src, "Dockerfile"))
	if err != nil {
		return fmt.Errorf("rmqcontainer: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), dockerfile, 0o644); err != nil {
		return fmt.Errorf("rmqcontainer: %w", err)
	}
	// -trimpath and no VCS stamp make the binary, hence MinirmqImage's tag, depend on the
	// source only.
	if _, err := goOutput(ctx, "build", "-trimpath", "-buildvcs=false", "-o", filepath.Join(dir, "minirmq"), minirmqPackage); err != nil {
		return fmt.Errorf("rmqcontainer: build %s: %w", minirmqPackage, err)
	}
	return nil
}

// goOutput runs the go tool with cgo off (the image has no libc) and returns its trimmed stdout.
func goOutput(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

var minirmqImage struct {
	mu    sync.Mutex
	name  string
	build func(context.Context) (string, error) // buildMinirmqImage; tests replace it
}

// MinirmqImage builds cmd/minirmq into a local image once per process and returns its name
// (MinirmqRepo:<hash of the binary>). The image is kept, so later runs with the same source
// reuse it without building; run it with Run like any other image. A failed build is not
// remembered: the next call tries again (the failure may have been ctx, or Docker not up yet).
func MinirmqImage(ctx context.Context) (string, error) {
	minirmqImage.mu.Lock()
	defer minirmqImage.mu.Unlock()
	if minirmqImage.name != "" {
		return minirmqImage.name, nil
	}
	build := minirmqImage.build
	if build == nil {
		build = buildMinirmqImage
	}
	name, err := build(ctx)
	if err != nil {
		return "", err
	}
	minirmqImage.name = name
	return name, nil
}

func buildMinirmqImage(ctx context.Context) (string, error) {
	dir, err := os.MkdirTemp("", "rmqcontainer-minirmq-")
	if err != nil {
		return "", fmt.Errorf("rmqcontainer: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := MinirmqContext(ctx, dir); err != nil {
		return "", err
	}
	bin, err := os.ReadFile(filepath.Join(dir, "minirmq"))
	if err != nil {
		return "", fmt.Errorf("rmqcontainer: %w", err)
	}
	sum := sha256.Sum256(bin)
	tag := hex.EncodeToString(sum[:6])
	name := MinirmqRepo + ":" + tag

	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return "", fmt.Errorf("rmqcontainer: docker: %w", err)
	}
	defer p.Close()
	if _, err := p.Client().ImageInspect(ctx, name); err == nil {
		return name, nil
	}
	req := testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		Context: dir, Repo: MinirmqRepo, Tag: tag, KeepImage: true,
	}}
	if _, err := p.BuildImage(ctx, &req); err != nil {
		return "", fmt.Errorf("rmqcontainer: build image %s: %w", name, err)
	}
	pruneMinirmqImages(ctx, p.Client(), name, MinirmqRepo+":", time.Now().Add(-time.Hour))
	return name, nil
}

// pruneMinirmqImages removes images of earlier minirmq builds, so changing the source does not
// pile up images. Only those older than an hour go (a concurrent test run on other source may
// be about to start its own), and never while a container uses them. Best effort: a failure
// leaves an image behind, nothing worse.
func pruneMinirmqImages(ctx context.Context, cli client.APIClient, keep, tagPrefix string, createdBefore time.Time) {
	list, err := cli.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", MinirmqRepo)})
	if err != nil {
		return
	}
	for _, img := range list.Items {
		if img.Created >= createdBefore.Unix() {
			continue
		}
		for _, tag := range img.RepoTags {
			if tag != keep && strings.HasPrefix(tag, tagPrefix) {
				_, _ = cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{PruneChildren: true})
			}
		}
	}
}

// RunTest starts a container for a test and terminates it in tb.Cleanup. An empty image means
// $ROCKETMQ_IMAGE, or when that is unset too, the locally built cmd/minirmq image
// (MinirmqImage). It skips the test when no Docker engine
// answers, and fails it instead when CI=true. Set TESTCONTAINERS_RYUK_DISABLED=true (in TestMain)
// where the reaper image cannot be pulled: cleanup then relies on tb.Cleanup alone.
func RunTest(tb testing.TB, image string, opts ...Option) *Container {
	tb.Helper()
	RequireDocker(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if image == "" {
		image = os.Getenv(EnvImage)
	}
	if image == "" {
		var err error
		if image, err = MinirmqImage(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	c, err := Run(ctx, image, append([]Option{WithLogger(log.TestLogger(tb))}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Terminate(ctx); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// RequireDocker skips the test when no Docker engine answers (failing it when CI=true).
func RequireDocker(tb testing.TB) {
	tb.Helper()
	if err := dockerHealth(); err != nil {
		if os.Getenv(EnvCI) == "true" {
			tb.Fatalf("rmqcontainer: no Docker engine answers and %s=true: %v", EnvCI, err)
		}
		tb.Skipf("rmqcontainer: skipping, no Docker engine answers: %v", err)
	}
}

func dockerHealth() (err error) {
	// testcontainers panics on some broken Docker configurations instead of returning an error.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("docker provider: %v", r)
		}
	}()
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return err
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Health(ctx)
}
