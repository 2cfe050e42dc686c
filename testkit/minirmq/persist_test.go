package minirmq_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// These tests need a data directory, which only minirmq has: they never use ROCKETMQ_NAMESRV.

// rawSend stores one message with SEND_MESSAGE and fails the test unless it is acknowledged.
func rawSend(t *testing.T, addr, topic string, queueID int, body string, props string) {
	t.Helper()
	resp := rawRequest(t, addr, &rawCmd{Code: 10, Body: []byte(body), ExtFields: map[string]string{
		"producerGroup": "persist_producer", "topic": topic, "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
		"queueId": strconv.Itoa(queueID), "sysFlag": "0", "bornTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10),
		"flag": "0", "properties": props,
	}})
	require.EqualValues(t, 0, resp.Code, resp.Remark)
}

func rawCommitOffset(t *testing.T, addr, group, topic string, queueID int, offset int64) {
	t.Helper()
	resp := rawRequest(t, addr, &rawCmd{Code: 15, ExtFields: map[string]string{
		"consumerGroup": group, "topic": topic, "queueId": strconv.Itoa(queueID), "commitOffset": strconv.FormatInt(offset, 10),
	}})
	require.EqualValues(t, 0, resp.Code, resp.Remark)
}

func bodiesOf(ms []minirmq.Message) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, string(m.Body))
	}
	return out
}

// copyDir copies a data directory file by file while its server runs: what a killed process
// leaves behind, since every acknowledged write is already in the files.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if d.Name() == "LOCK" || strings.HasSuffix(d.Name(), ".tmp") {
			return nil // the lock is the process's; a .tmp file is a checkpoint being written
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a checkpoint replaced while we walked: the new one is read too
		}
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	}))
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "commitlog"))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestDataDirKeepsStateAcrossServers(t *testing.T) {
	dir := t.TempDir()
	srv, err := minirmq.New(minirmq.WithDataDir(dir))
	require.NoError(t, err)
	require.NoError(t, srv.CreateTopic("persisted", 2))
	for i := 0; i < 10; i++ {
		rawSend(t, srv.Addr(), "persisted", i%2, fmt.Sprintf("m%d", i), "TAGS\x01a\x02KEYS\x01k"+strconv.Itoa(i)+"\x02")
	}
	rawCommitOffset(t, srv.Addr(), "g1", "persisted", 0, 3)
	resp := rawRequest(t, srv.Addr(), &rawCmd{Code: 25, Body: []byte("brokerIP1=10.1.2.3\nlistenPort=4567\n")})
	require.EqualValues(t, 0, resp.Code, resp.Remark)
	before := srv.Messages("persisted")
	require.NoError(t, srv.Close())
	require.NoError(t, srv.Close(), "Close stays idempotent with a data directory")

	again, err := minirmq.New(minirmq.WithDataDir(dir))
	require.NoError(t, err)
	defer again.Close()
	assert.Equal(t, before, again.Messages("persisted"), "messages, offsets, tags and keys come back")
	off, ok := again.Offset("g1", "persisted", 0)
	assert.True(t, ok)
	assert.EqualValues(t, 3, off)
	assert.EqualValues(t, 7, again.Lag("g1", "persisted"), "queue 0: 5-3, queue 1: 5 never committed")
	assert.Equal(t, "10.1.2.3:4567", again.BrokerAddr(), "runtime broker config survives, like broker.conf")

	// New messages continue the queues and the commit log.
	rawSend(t, again.Addr(), "persisted", 1, "m10", "")
	all := again.Messages("persisted")
	require.Len(t, all, 11)
	last := all[10]
	assert.EqualValues(t, 5, last.QueueOffset)
	assert.Greater(t, last.CommitLogOffset, before[9].CommitLogOffset)
}

func TestDataDirRecoversWhatAKilledServerAcknowledged(t *testing.T) {
	dir := t.TempDir()
	srv := minirmq.Run(t, minirmq.WithDataDir(dir), minirmq.WithTimeScale(0.001))
	for i := 0; i < 20; i++ {
		rawSend(t, srv.Addr(), "killed", 0, fmt.Sprintf("m%d", i), "")
	}
	// Level 16 is 30 minutes, 1.8 s at this scale: still parked when the copy is taken, even on
	// a loaded machine.
	rawSend(t, srv.Addr(), "killed", 0, "delayed", "DELAY\x0116\x02")
	require.Len(t, srv.Messages("SCHEDULE_TOPIC_XXXX"), 1)
	// Two half messages; the producer commits the first before the kill.
	half := "TRAN_MSG\x01true\x02PGROUP\x01persist_producer\x02"
	rawSend(t, srv.Addr(), "killed", 0, "half-committed", half)
	rawSend(t, srv.Addr(), "killed", 0, "half-pending", half)
	halfs := srv.Messages("RMQ_SYS_TRANS_HALF_TOPIC")
	require.Len(t, halfs, 2)
	resp := rawRequest(t, srv.Addr(), &rawCmd{Code: 37, ExtFields: map[string]string{
		"producerGroup": "persist_producer", "tranStateTableOffset": "0", "commitOrRollback": "8",
		"commitLogOffset": strconv.FormatInt(halfs[0].CommitLogOffset, 10), "msgId": halfs[0].MsgID,
	}})
	require.EqualValues(t, 0, resp.Code, resp.Remark)
	require.Equal(t, 1, srv.PendingTransactions())

	require.Len(t, srv.Messages("killed"), 21, "the delayed message is still parked")
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	// As if it was killed before its first checkpoint (one may have been saved already).
	if err := os.Remove(filepath.Join(crashed, "checkpoint.json")); err != nil {
		require.ErrorIs(t, err, os.ErrNotExist)
	}

	rec := minirmq.Run(t, minirmq.WithDataDir(crashed), minirmq.WithTimeScale(0.001))
	got := bodiesOf(rec.Messages("killed"))
	require.GreaterOrEqual(t, len(got), 21)
	for i := 0; i < 20; i++ {
		assert.Equal(t, fmt.Sprintf("m%d", i), got[i])
	}
	assert.Equal(t, "half-committed", got[20])
	assert.Equal(t, 1, rec.PendingTransactions(), "the uncommitted half message waits for its check-back again")
	require.Eventually(t, func() bool {
		return len(rec.Messages("killed")) == 22
	}, 10*time.Second, 10*time.Millisecond, "the delay parked before the kill is delivered after the restart")
	assert.Equal(t, "delayed", string(rec.Messages("killed")[21].Body))
}

func TestDataDirCutsATornEndAndRefusesDamageElsewhere(t *testing.T) {
	dir := t.TempDir()
	srv, err := minirmq.New(minirmq.WithDataDir(dir), minirmq.WithSegmentSize(600))
	require.NoError(t, err)
	for i := 0; i < 12; i++ {
		rawSend(t, srv.Addr(), "torn", 0, fmt.Sprintf("message-%02d-%s", i, string(make([]byte, 100))), "")
	}
	require.NoError(t, srv.Close())
	segs := segmentFiles(t, dir)
	require.Greater(t, len(segs), 2, "small segments roll")

	// A write cut short at the end of the last segment is dropped.
	last := filepath.Join(dir, "commitlog", segs[len(segs)-1])
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write([]byte{0, 0, 1, 0, 0xda, 0xa3})
	require.NoError(t, err)
	require.NoError(t, f.Close())
	rec, err := minirmq.New(minirmq.WithDataDir(dir), minirmq.WithSegmentSize(600))
	require.NoError(t, err)
	assert.Len(t, rec.Messages("torn"), 12)
	rawSend(t, rec.Addr(), "torn", 0, "after", "")
	require.NoError(t, rec.Close())
	rec, err = minirmq.New(minirmq.WithDataDir(dir), minirmq.WithSegmentSize(600))
	require.NoError(t, err)
	assert.Equal(t, "after", string(rec.Messages("torn")[12].Body), "the log continues where the torn write was cut")
	require.NoError(t, rec.Close())

	// The same damage in an earlier segment would lose messages after it: refuse to start.
	first := filepath.Join(dir, "commitlog", segs[0])
	b, err := os.ReadFile(first)
	require.NoError(t, err)
	i := bytes.LastIndex(b, []byte("message-"))
	require.Positive(t, i)
	b[i] ^= 0xff // inside the body of its last message
	require.NoError(t, os.WriteFile(first, b, 0o644))
	_, err = minirmq.New(minirmq.WithDataDir(dir))
	require.Error(t, err)
	assert.Contains(t, err.Error(), segs[0])
	assert.Contains(t, err.Error(), "CRC")
}

func TestDataDirIsUsedByOneServerAtATime(t *testing.T) {
	dir := t.TempDir()
	minirmq.Run(t, minirmq.WithDataDir(dir))
	_, err := minirmq.New(minirmq.WithDataDir(dir))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "in use")
}

func TestDataDirRejectsABadCheckpoint(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "checkpoint.json"), []byte("{not json"), 0o644))
	_, err := minirmq.New(minirmq.WithDataDir(dir))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "checkpoint.json")
	_, err = minirmq.New(minirmq.WithDataDir(dir))
	assert.NotContains(t, err.Error(), "in use", "a failed start releases the directory")
}

func TestDataDirRetentionDeletesSegmentsAndKeepsOffsets(t *testing.T) {
	dir := t.TempDir()
	opts := []minirmq.Option{minirmq.WithDataDir(dir), minirmq.WithSegmentSize(4 << 10), minirmq.WithRetention(8<<10, 0)}
	srv, err := minirmq.New(opts...)
	require.NoError(t, err)
	body := string(make([]byte, 1000))
	for i := 0; i < 100; i++ {
		rawSend(t, srv.Addr(), "retained", 0, fmt.Sprintf("%03d%s", i, body), "")
	}
	kept := srv.Messages("retained")
	require.Less(t, len(kept), 100)
	require.NoError(t, srv.Close())
	assert.LessOrEqual(t, len(segmentFiles(t, dir)), 5, "segments behind retention are deleted")

	rec, err := minirmq.New(opts...)
	require.NoError(t, err)
	defer rec.Close()
	assert.Equal(t, kept, rec.Messages("retained"), "exactly the retained messages come back")
	rawSend(t, rec.Addr(), "retained", 0, "next", "")
	all := rec.Messages("retained")
	assert.EqualValues(t, 100, all[len(all)-1].QueueOffset, "the queue's offsets continue")
}

func readQueueNums(t *testing.T, addr, topic string) int {
	t.Helper()
	resp := rawRequest(t, addr, &rawCmd{Code: 105, ExtFields: map[string]string{"topic": topic}})
	require.EqualValues(t, 0, resp.Code, resp.Remark)
	var route struct {
		QueueDatas []struct {
			ReadQueueNums int `json:"readQueueNums"`
		} `json:"queueDatas"`
	}
	require.NoError(t, json.Unmarshal(resp.Body, &route), string(resp.Body))
	require.Len(t, route.QueueDatas, 1)
	return route.QueueDatas[0].ReadQueueNums
}

func TestDataDirSavesTopicChangesAtOnce(t *testing.T) {
	dir := t.TempDir()
	srv := minirmq.Run(t, minirmq.WithDataDir(dir))
	require.NoError(t, srv.CreateTopic("wide", 8))
	rawSend(t, srv.Addr(), "wide", 6, "in queue 6", "")
	require.NoError(t, srv.CreateTopic("doomed", 1))
	rawSend(t, srv.Addr(), "doomed", 0, "old", "")
	resp := rawRequest(t, srv.Addr(), &rawCmd{Code: 215, ExtFields: map[string]string{"topic": "doomed"}})
	require.EqualValues(t, 0, resp.Code, resp.Remark)
	rawSend(t, srv.Addr(), "doomed", 0, "new", "") // created again by the send
	crashed := t.TempDir()
	copyDir(t, dir, crashed) // killed before the next periodic checkpoint

	rec := minirmq.Run(t, minirmq.WithDataDir(crashed))
	assert.Equal(t, 8, readQueueNums(t, rec.Addr(), "wide"), "a topic created just before the kill keeps its queues")
	assert.Equal(t, []string{"in queue 6"}, bodiesOf(rec.Messages("wide")))
	doomed := rec.Messages("doomed")
	require.Len(t, doomed, 1, "the deleted topic's message stays deleted")
	assert.Equal(t, "new", string(doomed[0].Body))
	assert.EqualValues(t, 0, doomed[0].QueueOffset)
}

// fiveInOneSegment stores message-0 to message-4 in topic on a server with data directory dir,
// closes it, and returns the path of the one commit-log segment they went to and the messages.
func fiveInOneSegment(t *testing.T, dir, topic string) (string, []minirmq.Message) {
	t.Helper()
	srv, err := minirmq.New(minirmq.WithDataDir(dir))
	require.NoError(t, err)
	for i := 0; i < 5; i++ {
		rawSend(t, srv.Addr(), topic, 0, fmt.Sprintf("message-%d", i), "")
	}
	ms := srv.Messages(topic)
	require.NoError(t, srv.Close())
	segs := segmentFiles(t, dir)
	require.Len(t, segs, 1)
	return filepath.Join(dir, "commitlog", segs[0]), ms
}

func TestDataDirRefusesDamageInsideItsLastSegment(t *testing.T) {
	dir := t.TempDir()
	path, _ := fiveInOneSegment(t, dir, "flipped")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	i := bytes.Index(b, []byte("message-2"))
	require.Positive(t, i)
	b[i] ^= 0xff // a complete message, with three after it: not a torn write
	require.NoError(t, os.WriteFile(path, b, 0o644))

	_, err = minirmq.New(minirmq.WithDataDir(dir))
	require.Error(t, err, "cutting here would drop messages 2 to 4")
	assert.Contains(t, err.Error(), "CRC")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, b, after, "a refused start leaves the files as they were")
}

func TestDataDirNoticesMissingSegments(t *testing.T) {
	dir := t.TempDir()
	srv, err := minirmq.New(minirmq.WithDataDir(dir), minirmq.WithSegmentSize(600))
	require.NoError(t, err)
	for i := 0; i < 12; i++ {
		rawSend(t, srv.Addr(), "gap", 0, fmt.Sprintf("message-%02d-%s", i, string(make([]byte, 100))), "")
	}
	require.NoError(t, srv.Close())
	segs := segmentFiles(t, dir)
	require.Greater(t, len(segs), 2)
	require.NoError(t, os.Remove(filepath.Join(dir, "commitlog", segs[0])))
	_, err = minirmq.New(minirmq.WithDataDir(dir))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "segment files are missing")
}

func TestConcurrentCloseWaitsForTheFirst(t *testing.T) {
	dir := t.TempDir()
	srv, err := minirmq.New(minirmq.WithDataDir(dir))
	require.NoError(t, err)
	rawSend(t, srv.Addr(), "closing", 0, "m", "")
	done := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { done <- srv.Close() }()
	}
	// Whichever returns first, the server is closed by then: its directory is released.
	require.NoError(t, <-done)
	again, err := minirmq.New(minirmq.WithDataDir(dir))
	require.NoError(t, err)
	defer again.Close()
	assert.Len(t, again.Messages("closing"), 1)
	require.NoError(t, <-done)
}

// A size field damaged so that it points past the end of the last segment looks like a write
// cut short, but complete messages follow it: cutting there would drop them, so the start is
// refused. Without a checkpoint nothing else would notice (a kill before the first save).
func TestDataDirRefusesADamagedSizeThatLooksTorn(t *testing.T) {
	dir := t.TempDir()
	path, ms := fiveInOneSegment(t, dir, "sized")
	require.NoError(t, os.Remove(filepath.Join(dir, "checkpoint.json")))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	at := ms[2].CommitLogOffset
	binary.BigEndian.PutUint32(b[at:], 0x7f000000|binary.BigEndian.Uint32(b[at:]))
	require.NoError(t, os.WriteFile(path, b, 0o644))

	_, err = minirmq.New(minirmq.WithDataDir(dir))
	require.Error(t, err, "messages 2 to 4 would be cut as a torn write")
	assert.Contains(t, err.Error(), filepath.Base(path))
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, b, after, "a refused start leaves the files as they were")
}

// Once Close has released the directory another server may own it: a change made on the closed
// server is refused instead of overwriting the new owner's checkpoint.
func TestClosedServerLeavesItsDataDirAlone(t *testing.T) {
	dir := t.TempDir()
	first, err := minirmq.New(minirmq.WithDataDir(dir))
	require.NoError(t, err)
	require.NoError(t, first.Close())
	second := minirmq.Run(t, minirmq.WithDataDir(dir))
	require.NoError(t, second.CreateTopic("owned", 1))
	rawSend(t, second.Addr(), "owned", 0, "m", "")
	rawCommitOffset(t, second.Addr(), "g", "owned", 0, 1)
	require.NoError(t, second.CreateTopic("saved-now", 1)) // saves the checkpoint at once
	before, err := os.ReadFile(filepath.Join(dir, "checkpoint.json"))
	require.NoError(t, err)

	err = first.CreateTopic("ghost", 1)
	require.Error(t, err, "the closed server cannot save")
	assert.Contains(t, err.Error(), "closed")
	after, err := os.ReadFile(filepath.Join(dir, "checkpoint.json"))
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after), "the new owner's checkpoint is untouched")
	assert.NotContains(t, string(after), "ghost")
}
