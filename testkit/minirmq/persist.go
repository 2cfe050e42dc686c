package minirmq

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A data directory (WithDataDir) holds:
//
//	commitlog/<20-digit offset>  commit-log segments named by the commit-log offset of their
//	                             first message: stored messages back to back, in the encoding
//	                             pulls return, as the real broker's CommitLog files
//	checkpoint.json              everything else: topics, queue and consumer offsets, pending
//	                             delays and transactions, runtime broker config; rewritten
//	                             atomically every checkpointInterval and on Close
//	LOCK                         held while a server uses the directory
//
// A message is written to its segment before its send is answered, so a killed process loses
// no acknowledged message (the page cache outlives it, as with the real broker's default
// asynchronous flush; a power loss is not covered). On start the checkpoint is loaded and the
// commit log after it is replayed, which also restores delays and half messages stored after
// the checkpoint, like the real broker's recovery dispatching the commit log to its consume
// queues. Consumer offsets committed after the last checkpoint are lost with the process, so a
// crash redelivers rather than drops.

const (
	commitLogDir       = "commitlog"
	checkpointFile     = "checkpoint.json"
	lockFile           = "LOCK"
	defaultSegmentSize = 64 << 20
	checkpointInterval = time.Second
	checkpointVersion  = 1
)

// commitLog appends stored messages to segment files. Requires Server.mu, like store.
type commitLog struct {
	dir      string
	segSize  int64
	segments []segment // sorted by start; the last one is written to
	cur      *os.File
	// tornAt is where replay found the last segment's final message cut short (-1: it did
	// not); cutTornEnd removes those bytes once recovery has succeeded.
	tornAt int64
	// broken is set when a failed write could not be undone: the segment's framing is lost,
	// so nothing more may be appended.
	broken error
}

type segment struct {
	start, size int64
}

func (s segment) end() int64 { return s.start + s.size }

func segmentName(start int64) string { return fmt.Sprintf("%020d", start) }

func (l *commitLog) path(start int64) string { return filepath.Join(l.dir, segmentName(start)) }

// openCommitLog lists the segments of dir, creating it when missing.
func openCommitLog(dir string, segSize int64) (*commitLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	l := &commitLog{dir: dir, segSize: segSize, tornAt: -1}
	for _, e := range entries {
		start, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil || len(e.Name()) != 20 || !e.Type().IsRegular() {
			return nil, fmt.Errorf("unexpected file %s in the commit log directory", filepath.Join(dir, e.Name()))
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		l.segments = append(l.segments, segment{start: start, size: info.Size()})
	}
	sort.Slice(l.segments, func(i, j int) bool { return l.segments[i].start < l.segments[j].start })
	return l, nil
}

// replay calls fn for every complete message, in commit-log order, with a copy of its bytes
// (so a retained message does not keep its whole segment in memory). A message at the end of
// the last segment that runs past the end of the file (a write cut short) is left out, and
// cutTornEnd removes it; any other damage is an error, since skipping it would drop messages.
func (l *commitLog) replay(fn func(enc []byte, phys int64) error) error {
	for i, seg := range l.segments {
		last := i == len(l.segments)-1
		if i > 0 && seg.start != l.segments[i-1].end() {
			return fmt.Errorf("commit log segment %s starts at %d, but the one before it ends at %d",
				l.path(seg.start), seg.start, l.segments[i-1].end())
		}
		data, err := os.ReadFile(l.path(seg.start))
		if err != nil {
			return err
		}
		pos := 0
		for pos < len(data) {
			n, err := checkRecord(data[pos:], seg.start+int64(pos))
			if err != nil {
				if last && incomplete(data[pos:]) && !recordAfter(data, pos, seg.start) {
					l.tornAt = int64(pos)
					break
				}
				return fmt.Errorf("commit log segment %s at offset %d: %w", l.path(seg.start), pos, err)
			}
			if err := fn(bytes.Clone(data[pos:pos+n]), seg.start+int64(pos)); err != nil {
				return err
			}
			pos += n
		}
		l.segments[i].size = int64(pos)
	}
	return nil
}

// incomplete reports whether b, the bytes left in a segment, is shorter than the message it
// starts and, as far as it goes, looks like the start of a message: what a write cut short
// leaves.
func incomplete(b []byte) bool {
	if len(b) >= 8 && binary.BigEndian.Uint32(b[4:8]) != messageMagic {
		return false
	}
	return len(b) < 4 || int64(binary.BigEndian.Uint32(b)) > int64(len(b))
}

// physFieldAt is where a stored message keeps its own commit-log offset.
const physFieldAt = 28

// recordAfter reports whether a valid message starts anywhere in data after pos (data is a
// segment starting at commit-log offset segStart). A write cut short is the last thing in the
// log, so a message after it means the size field at pos was damaged: cutting there would drop
// acknowledged messages.
func recordAfter(data []byte, pos int, segStart int64) bool {
	for p := pos + 1; p+physFieldAt+8 <= len(data); p++ {
		// A message names its own offset: a cheap test before the full check.
		if int64(binary.BigEndian.Uint64(data[p+physFieldAt:])) != segStart+int64(p) {
			continue
		}
		if _, err := checkRecord(data[p:], segStart+int64(p)); err == nil {
			return true
		}
	}
	return false
}

// cutTornEnd truncates the last segment where replay found a torn message.
func (l *commitLog) cutTornEnd() error {
	if l.tornAt < 0 || len(l.segments) == 0 {
		return nil
	}
	path := l.path(l.segments[len(l.segments)-1].start)
	if err := os.Truncate(path, l.tornAt); err != nil {
		return fmt.Errorf("cutting the torn end of %s: %w", path, err)
	}
	l.tornAt = -1
	return nil
}

// checkRecord validates the stored message at the start of b, written at commit-log offset
// phys, and returns its length.
func checkRecord(b []byte, phys int64) (int, error) {
	if len(b) < 4 {
		return 0, fmt.Errorf("%d trailing bytes, too short for a message", len(b))
	}
	size := int(binary.BigEndian.Uint32(b))
	if size < 4 || size > len(b) {
		return 0, fmt.Errorf("message size %d, %d bytes left", size, len(b))
	}
	m, err := decodeStored(b[:size])
	if err != nil {
		return 0, err
	}
	if m.phys != phys {
		return 0, fmt.Errorf("message claims commit-log offset %d", m.phys)
	}
	if crc := crc32.ChecksumIEEE(m.body) & 0x7FFFFFFF; crc != binary.BigEndian.Uint32(b[8:12]) {
		return 0, errors.New("message body does not match its CRC")
	}
	return size, nil
}

// end is the commit-log offset after the last message written.
func (l *commitLog) end() int64 {
	if len(l.segments) == 0 {
		return 0
	}
	return l.segments[len(l.segments)-1].end()
}

// write appends one encoded message stored at commit-log offset phys, starting a new segment
// when the current one is full (messages are never split across segments).
func (l *commitLog) write(phys int64, enc []byte) error {
	if l.broken != nil {
		return l.broken
	}
	n := len(l.segments)
	if n > 0 && l.segments[n-1].end() != phys {
		return fmt.Errorf("commit log: writing offset %d, but the log ends at %d", phys, l.segments[n-1].end())
	}
	switch {
	case n == 0 || l.segments[n-1].size > 0 && l.segments[n-1].size+int64(len(enc)) > l.segSize:
		if err := l.open(segment{start: phys}); err != nil {
			return err
		}
	case l.cur == nil: // the first write after a restart continues the last segment
		if err := l.open(l.segments[n-1]); err != nil {
			return err
		}
	}
	if _, err := l.cur.Write(enc); err != nil {
		// A partial write would break the segment's framing: cut back to the last message.
		if terr := l.cur.Truncate(l.segments[len(l.segments)-1].size); terr != nil {
			l.broken = fmt.Errorf("commit log: a failed write could not be undone (%v), no more messages are accepted: %w", terr, err)
			return l.broken
		}
		return fmt.Errorf("commit log: %w", err)
	}
	l.segments[len(l.segments)-1].size += int64(len(enc))
	return nil
}

// open makes seg the segment written to, adding it to the list when it is new.
func (l *commitLog) open(seg segment) error {
	if l.cur != nil {
		if err := l.cur.Close(); err != nil {
			return fmt.Errorf("commit log: %w", err)
		}
		l.cur = nil
	}
	f, err := os.OpenFile(l.path(seg.start), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("commit log: %w", err)
	}
	if n := len(l.segments); n == 0 || l.segments[n-1].start != seg.start {
		l.segments = append(l.segments, seg)
	}
	l.cur = f
	return nil
}

// dropBefore deletes the segments whose messages all lie before minPhys, never the one being
// written. Only call it once a checkpoint recording minPhys is on disk: recovery must not find
// queues whose messages vanished without the checkpoint knowing.
func (l *commitLog) dropBefore(minPhys int64) error {
	keep := 0
	for keep < len(l.segments)-1 && l.segments[keep].end() <= minPhys {
		if err := os.Remove(l.path(l.segments[keep].start)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("commit log: %w", err)
		}
		keep++
	}
	l.segments = append(l.segments[:0], l.segments[keep:]...)
	return nil
}

func (l *commitLog) close() error {
	if l.cur == nil {
		return nil
	}
	err := l.cur.Close()
	l.cur = nil
	return err
}

// checkpoint is checkpoint.json: the broker state that is not in the commit log, as of the
// moment the commit log ended at NextPhys.
type checkpoint struct {
	Version         int                `json:"version"`
	NextPhys        int64              `json:"nextPhys"`
	MinPhys         int64              `json:"minPhys"`
	Topics          []checkpointTopic  `json:"topics"`
	ConsumerOffsets []checkpointOffset `json:"consumerOffsets"`
	Delayed         []checkpointDue    `json:"delayed,omitempty"`
	HalfMessages    []checkpointHalf   `json:"halfMessages,omitempty"`
	BrokerConfig    map[string]string  `json:"brokerConfig,omitempty"`
}

type checkpointTopic struct {
	Name           string `json:"name"`
	ReadQueueNums  int    `json:"readQueueNums"`
	WriteQueueNums int    `json:"writeQueueNums"`
	Perm           int    `json:"perm"`
	// CreatedPhys is the commit-log end when the topic was created: older messages of the same
	// name belong to a deleted topic.
	CreatedPhys int64   `json:"createdPhys"`
	MaxOffsets  []int64 `json:"maxOffsets"`
}

type checkpointOffset struct {
	Group  string `json:"group"`
	Topic  string `json:"topic"`
	Queue  int    `json:"queueId"`
	Offset int64  `json:"offset"`
}

type checkpointDue struct {
	DueMs int64 `json:"dueMs"`
	Phys  int64 `json:"commitLogOffset"`
}

type checkpointHalf struct {
	Phys        int64  `json:"commitLogOffset"`
	Group       string `json:"producerGroup"`
	Checks      int    `json:"checks"`
	NextCheckMs int64  `json:"nextCheckMs"`
}

// maxCheckpointQueues bounds the queues of a topic read from a checkpoint, so a damaged file
// cannot make recovery allocate without limit.
const maxCheckpointQueues = 1 << 16

// validate rejects values minirmq never writes, naming the first one found.
func (cp *checkpoint) validate() error {
	if cp.NextPhys < 0 || cp.MinPhys < 0 || cp.MinPhys > cp.NextPhys {
		return fmt.Errorf("commit-log offsets out of order: minPhys %d, nextPhys %d", cp.MinPhys, cp.NextPhys)
	}
	for _, t := range cp.Topics {
		if err := validateTopic(t.Name); err != nil {
			return err
		}
		for _, n := range []int{t.ReadQueueNums, t.WriteQueueNums, len(t.MaxOffsets)} {
			if n < 0 || n > maxCheckpointQueues {
				return fmt.Errorf("topic %s: %d queues, want 0 to %d", t.Name, n, maxCheckpointQueues)
			}
		}
		for i, off := range t.MaxOffsets {
			if off < 0 {
				return fmt.Errorf("topic %s: queue %d has offset %d", t.Name, i, off)
			}
		}
	}
	for _, o := range cp.ConsumerOffsets {
		if o.Queue < 0 || o.Queue >= maxCheckpointQueues {
			return fmt.Errorf("consumer offset of %s on %s: queue %d", o.Group, o.Topic, o.Queue)
		}
	}
	return nil
}

// checkpointLocked captures the state to persist. Requires s.mu.
func (s *Server) checkpointLocked() *checkpoint {
	st := s.store
	cp := &checkpoint{Version: checkpointVersion, NextPhys: st.nextPhy, MinPhys: st.nextPhy}
	if st.logHead < len(st.log) {
		cp.MinPhys = st.log[st.logHead].phys
	}
	for _, name := range sortedKeys(st.topics) {
		t := st.topics[name]
		ct := checkpointTopic{Name: name, ReadQueueNums: t.readQueueNums, WriteQueueNums: t.writeQueueNums,
			Perm: t.perm, CreatedPhys: t.createdPhys}
		for _, q := range t.queues {
			ct.MaxOffsets = append(ct.MaxOffsets, q.maxOffset())
		}
		cp.Topics = append(cp.Topics, ct)
	}
	for _, group := range sortedKeys(st.offsets) {
		for k, off := range st.offsets[group] {
			cp.ConsumerOffsets = append(cp.ConsumerOffsets, checkpointOffset{Group: group, Topic: k.topic, Queue: k.queue, Offset: off})
		}
	}
	sort.Slice(cp.ConsumerOffsets, func(i, j int) bool {
		a, b := cp.ConsumerOffsets[i], cp.ConsumerOffsets[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Queue < b.Queue
	})
	for _, it := range s.sched.items {
		cp.Delayed = append(cp.Delayed, checkpointDue{DueMs: it.due.UnixMilli(), Phys: it.phys})
	}
	sort.Slice(cp.Delayed, func(i, j int) bool { return cp.Delayed[i].Phys < cp.Delayed[j].Phys })
	for phys, h := range s.halfs {
		cp.HalfMessages = append(cp.HalfMessages, checkpointHalf{Phys: phys, Group: h.group, Checks: h.checks,
			NextCheckMs: h.nextCheck.UnixMilli()})
	}
	sort.Slice(cp.HalfMessages, func(i, j int) bool { return cp.HalfMessages[i].Phys < cp.HalfMessages[j].Phys })
	if len(s.brokerConf) > 0 {
		cp.BrokerConfig = make(map[string]string, len(s.brokerConf))
		for k, v := range s.brokerConf {
			cp.BrokerConfig[k] = v
		}
	}
	return cp
}

// persistence is the data directory of a server started WithDataDir.
type persistence struct {
	dir    string
	log    *commitLog
	unlock func() error

	saveMu   sync.Mutex // one checkpoint at a time: the loop's, an admin request's, Close's
	lastSave []byte     // checkpoint.json as last written, to skip rewriting it unchanged
	// released is set under saveMu once Close wrote the last checkpoint and let go of the
	// directory: another server may own it by now, so nothing is written there any more.
	released bool
}

// errDataDirReleased is what a change made after Close gets instead of being saved into a data
// directory the server no longer owns.
var errDataDirReleased = errors.New("server closed: its data directory is released")

// openDataDir locks dir, loads its checkpoint and replays its commit log into s. It runs in New,
// before the server is shared.
func (s *Server) openDataDir(dir string) (*persistence, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("minirmq: data dir: %w", err)
	}
	unlock, err := lockDir(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("minirmq: data dir %s: %w", dir, err)
	}
	p := &persistence{dir: dir, unlock: unlock}
	fail := func(err error) (*persistence, error) {
		if p.log != nil {
			_ = p.log.close()
		}
		_ = unlock()
		return nil, fmt.Errorf("minirmq: data dir %s: %w", dir, err)
	}
	cp := &checkpoint{Version: checkpointVersion}
	raw, err := os.ReadFile(filepath.Join(dir, checkpointFile))
	loaded := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fail(err)
	default:
		cp.Version = 0 // a file must say which version it is
		if err := json.Unmarshal(raw, cp); err != nil {
			return fail(fmt.Errorf("%s: %w", checkpointFile, err))
		}
		if cp.Version != checkpointVersion {
			return fail(fmt.Errorf("%s: version %d, this minirmq reads version %d", checkpointFile, cp.Version, checkpointVersion))
		}
		if err := cp.validate(); err != nil {
			return fail(fmt.Errorf("%s: %w", checkpointFile, err))
		}
		p.lastSave = raw
	}
	segSize := s.cfg.segmentSize
	if segSize <= 0 {
		segSize = defaultSegmentSize
	}
	if p.log, err = openCommitLog(filepath.Join(dir, commitLogDir), segSize); err != nil {
		return fail(err)
	}
	if loaded {
		first := int64(-1) // no segment at all
		if len(p.log.segments) > 0 {
			first = p.log.segments[0].start
		}
		if first < 0 && cp.NextPhys > 0 || first > cp.MinPhys {
			return fail(fmt.Errorf("the checkpoint keeps messages from commit-log offset %d, but the commit log starts at %d: segment files are missing",
				cp.MinPhys, first))
		}
	}
	if err := s.recover(cp, p.log); err != nil {
		return fail(err)
	}
	if err := p.log.cutTornEnd(); err != nil {
		return fail(err)
	}
	return p, nil
}

// recover rebuilds the store, delays, half messages and broker config from a checkpoint and
// the commit log.
func (s *Server) recover(cp *checkpoint, log *commitLog) error {
	st := s.store
	for _, ct := range cp.Topics {
		t := st.createTopic(ct.Name, ct.ReadQueueNums, ct.WriteQueueNums, ct.Perm)
		t.createdPhys = ct.CreatedPhys
		t.ensureQueues(len(ct.MaxOffsets))
		for i, maxOffset := range ct.MaxOffsets {
			// Empty until the replay finds the queue's messages; an empty queue keeps its offsets.
			t.queues[i].minOffset = maxOffset
		}
	}
	for _, o := range cp.ConsumerOffsets {
		st.commitOffset(o.Group, o.Topic, o.Queue, o.Offset)
	}
	for _, d := range cp.Delayed {
		s.sched.add(time.UnixMilli(d.DueMs), d.Phys)
	}
	for _, h := range cp.HalfMessages {
		s.halfs[h.Phys] = &halfMessage{phys: h.Phys, group: h.Group, checks: h.Checks, nextCheck: time.UnixMilli(h.NextCheckMs)}
	}
	if len(cp.BrokerConfig) > 0 {
		if err := s.applyBrokerConfigLocked(cp.BrokerConfig); err != nil {
			return fmt.Errorf("%s: broker config: %w", checkpointFile, err)
		}
	}
	reset := map[queueKey]bool{}
	if err := log.replay(func(enc []byte, phys int64) error {
		return s.replayMessage(cp, enc, phys, reset)
	}); err != nil {
		return err
	}
	st.nextPhy = cp.NextPhys
	if len(log.segments) > 0 {
		if log.end() < cp.NextPhys {
			return fmt.Errorf("the commit log ends at %d, before the checkpoint's %d: segment files are missing", log.end(), cp.NextPhys)
		}
		st.nextPhy = log.end()
	}
	// Delays and half messages must point at messages parked for them: anything else in a
	// checkpoint would move an unrelated message.
	kept := s.sched.items[:0]
	for _, it := range s.sched.items {
		if m := st.byPhys(it.phys); m != nil && (m.topic == scheduleTopic || m.topic == timerTopic) {
			kept = append(kept, it)
		}
	}
	s.sched.items = kept
	heap.Init(&s.sched.items)
	for phys := range s.halfs {
		if m := st.byPhys(phys); m == nil || m.topic != halfTopic {
			delete(s.halfs, phys)
		}
	}
	for _, ct := range cp.Topics {
		t := st.topics[ct.Name]
		for i, maxOffset := range ct.MaxOffsets {
			if reset[queueKey{ct.Name, i}] {
				continue // the topic was deleted and created again since the checkpoint
			}
			if q := t.queues[i]; q.maxOffset() < maxOffset {
				return fmt.Errorf("queue %s/%d ends at offset %d in the commit log, but the checkpoint counted %d: segment files are missing",
					ct.Name, i, q.maxOffset(), maxOffset)
			}
		}
	}
	return nil
}

// replayMessage puts one commit-log message back in its queue, and, when it was stored after
// the checkpoint, redoes what storing it scheduled (a delay, a transaction check) or resolved
// (a committed half message).
func (s *Server) replayMessage(cp *checkpoint, enc []byte, phys int64, reset map[queueKey]bool) error {
	st := s.store
	st.nextPhy = phys + int64(len(enc))
	if phys < cp.MinPhys {
		return nil // dropped by retention before the checkpoint
	}
	m, err := decodeStored(enc)
	if err != nil {
		return err
	}
	if m.queueID < 0 || m.queueID >= maxCheckpointQueues || m.queueOffset < 0 {
		return fmt.Errorf("the message at commit-log offset %d names queue %d, offset %d", phys, m.queueID, m.queueOffset)
	}
	if err := validateTopic(m.topic); err != nil {
		return fmt.Errorf("the message at commit-log offset %d: %w", phys, err)
	}
	afterCheckpoint := phys >= cp.NextPhys
	t := st.topics[m.topic]
	if t == nil {
		if !afterCheckpoint {
			return nil // its topic was deleted
		}
		t = s.recreateTopicLocked(m.topic)
		t.createdPhys = phys
	}
	if phys < t.createdPhys {
		return nil // an earlier topic of the same name, since deleted
	}
	t.ensureQueues(int(m.queueID) + 1)
	q := t.queues[m.queueID]
	switch {
	case len(q.msgs) == 0:
		q.minOffset = m.queueOffset
	case m.queueOffset != q.maxOffset():
		// The topic was deleted and created again after the checkpoint: the new one starts over.
		q.msgs, q.minOffset = nil, m.queueOffset
		reset[queueKey{m.topic, int(m.queueID)}] = true
	}
	if afterCheckpoint && int(m.queueID) >= t.readQueueNums {
		// Created after the checkpoint with more queues than recovery assumed: make the queue
		// that holds this message readable.
		t.readQueueNums, t.writeQueueNums = max(t.readQueueNums, int(m.queueID)+1), max(t.writeQueueNums, int(m.queueID)+1)
	}
	props := parseProperties(m.properties)
	rec := &stored{enc: enc, topic: m.topic, tags: props[propTags], keys: props[propKeys], uniqKey: props[propUniqKey],
		queueID: m.queueID, queueOffset: m.queueOffset, phys: phys, storeTs: m.storeTs}
	st.log = append(st.log, rec)
	q.msgs = append(q.msgs, rec)
	st.bytes += int64(len(enc))
	if !afterCheckpoint {
		return nil
	}
	storedAt := time.UnixMilli(m.storeTs)
	switch m.topic {
	case scheduleTopic:
		level := min(max(int(m.queueID)+1, 1), maxDelayLevels)
		s.sched.add(storedAt.Add(s.scaled(delayLevels[level-1])), phys)
	case timerTopic:
		at, _ := timerDeliverTime(m.properties, storedAt)
		s.sched.add(storedAt.Add(s.scaled(at.Sub(storedAt))), phys)
	case halfTopic:
		s.halfs[phys] = &halfMessage{phys: phys, group: props[propProducerGroup], nextCheck: storedAt.Add(s.scaled(s.cfg.txTimeout))}
	}
	if m.preparedTxOffset != 0 && m.sysFlag&sysFlagTxMask == sysFlagTxCommit {
		delete(s.halfs, m.preparedTxOffset)
	}
	return nil
}

// recreateTopicLocked creates a topic found in the commit log after the checkpoint, with the
// queues and permissions the broker gives it when it first appears. Requires s.mu.
func (s *Server) recreateTopicLocked(name string) *topicConfig {
	switch {
	case name == scheduleTopic:
		return s.systemTopic(name, maxDelayLevels)
	case name == halfTopic, name == timerTopic, strings.HasPrefix(name, retryPrefix):
		return s.systemTopic(name, 1)
	case strings.HasPrefix(name, dlqPrefix):
		return s.dlqTopic(strings.TrimPrefix(name, dlqPrefix))
	}
	return s.store.createTopic(name, s.cfg.queueNums, s.cfg.queueNums, permRW)
}

// save writes the checkpoint when it changed, then deletes the segments it no longer needs.
func (p *persistence) save(cp *checkpoint) error {
	raw, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	if string(raw) != string(p.lastSave) {
		tmp := filepath.Join(p.dir, checkpointFile+".tmp")
		if err := writeFileSync(tmp, raw); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(p.dir, checkpointFile)); err != nil {
			return err
		}
		p.lastSave = raw
	}
	return nil
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkpointNow saves the current state and trims the commit log behind retention.
func (s *Server) checkpointNow() error {
	s.persist.saveMu.Lock()
	defer s.persist.saveMu.Unlock()
	return s.checkpointSaveLocked()
}

// checkpointSaveLocked is checkpointNow for a caller holding persist.saveMu.
func (s *Server) checkpointSaveLocked() error {
	if s.persist.released {
		return fmt.Errorf("minirmq: checkpoint: %w", errDataDirReleased)
	}
	s.mu.Lock()
	cp := s.checkpointLocked()
	s.mu.Unlock()
	// Saving outside s.mu keeps sends flowing; the checkpoint only ever lags the commit log,
	// which replay makes up for.
	if err := s.persist.save(cp); err != nil {
		return fmt.Errorf("minirmq: checkpoint: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.persist.log.dropBefore(cp.MinPhys)
}

// checkpointLoop saves the checkpoint every checkpointInterval.
func (s *Server) checkpointLoop() {
	defer s.loopWG.Done()
	ticker := time.NewTicker(checkpointInterval)
	defer ticker.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-ticker.C:
			if err := s.checkpointNow(); err != nil {
				s.cfg.logger.Error("minirmq: saving checkpoint", "err", err)
			}
		}
	}
}

// saveAdminChange saves a checkpoint at once after a change the commit log does not record
// (topics created, changed or deleted, runtime broker config), so a crash cannot undo it.
// It does nothing without a data directory.
func (s *Server) saveAdminChange() error {
	if s.persist == nil {
		return nil
	}
	return s.checkpointNow()
}

// closePersistence writes the final checkpoint and releases the data directory. Close calls it
// after every connection and loop has stopped.
func (s *Server) closePersistence() error {
	if s.persist == nil {
		return nil
	}
	s.persist.saveMu.Lock()
	defer s.persist.saveMu.Unlock()
	if s.persist.released {
		return nil
	}
	err := s.checkpointSaveLocked()
	s.mu.Lock()
	err = errors.Join(err, s.persist.log.close())
	s.mu.Unlock()
	s.persist.released = true
	return errors.Join(err, s.persist.unlock())
}
