package faults

import (
	"path/filepath"
	"testing"
	"time"
)

// TestPublishWhileDown publishes while the broker is unreachable: every Publish must return
// an error (a nil would be a silent loss), and publishing must succeed again once the broker
// is back without recreating the publisher. What was published before and after the outage
// must all be handled.
func TestPublishWhileDown(t *testing.T) {
	const caseName = "publish while down"
	eachTarget(t, caseName, func(t *testing.T, tg *target) {
		if tg.pause == nil {
			skipCase(t, caseName, tg.name, tg.pauseSkip)
		}
		topic, group := tg.topic(t), newGroup()
		path := filepath.Join(t.TempDir(), "handled")
		pub := tg.publisher(t)
		before := publishAll(pub, topic, newIDs(100), nil)
		if before.failedCount() > 0 {
			t.Fatalf("publishing with the broker up failed: %v", before.errs)
		}

		tg.pause(t)
		down := newIDs(5)
		during := publishAll(pub, topic, down, nil)
		tg.resume(t)
		silent := len(during.okIDs())
		if silent > 0 {
			t.Errorf("%d of %d Publish calls returned nil while the broker was down", silent, len(down))
		}

		// The client reconnects on its own; allow it some attempts.
		var after *publishResult
		deadline := time.Now().Add(60 * time.Second)
		for {
			after = publishAll(pub, topic, newIDs(1), nil)
			if after.failedCount() == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if after.failedCount() > 0 {
			t.Fatalf("Publish still failing 60s after the broker came back: %v", after.errs)
		}
		rest := publishAll(pub, topic, newIDs(100), nil)

		all := &publishResult{errs: map[string]int{}}
		for _, r := range []*publishResult{before, during, after, rest} {
			all.ok = append(all.ok, r.okIDs()...)
			all.failed = append(all.failed, r.failed...)
			for k, v := range r.errs {
				all.errs[k] += v
			}
		}
		startConsumer(t, tg, topic, group, path, consumerOptions{})
		waitHandled(t, path, all.okIDs, nil, 90*time.Second)
		// A failed Publish may still have reached the broker (the request went out, the
		// answer did not come back): that is allowed, and counted here.
		got, err := readLedger(path)
		if err != nil {
			t.Fatal(err)
		}
		delivered := 0
		for _, id := range down {
			if got[id] > 0 {
				delivered++
			}
		}
		note := ""
		if delivered > 0 {
			note = "failed publishes delivered anyway: " + itoa(delivered)
		}
		finish(t, caseName, tg.name, all, path, nil, note)
	})
}
