package minirmq_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// aclTarget is minirmq with ACL on, or the real ACL-enabled broker named by
// ROCKETMQ_ACL_NAMESRV with the account in ROCKETMQ_ACL_ACCESS_KEY / ROCKETMQ_ACL_SECRET_KEY.
func aclTarget(t *testing.T) (*target, primitive.Credentials) {
	if addr := os.Getenv("ROCKETMQ_ACL_NAMESRV"); addr != "" {
		return &target{addr: addr}, primitive.Credentials{AccessKey: os.Getenv("ROCKETMQ_ACL_ACCESS_KEY"),
			SecretKey: os.Getenv("ROCKETMQ_ACL_SECRET_KEY")}
	}
	creds := primitive.Credentials{AccessKey: "rocketbus", SecretKey: "s3cret-key"}
	srv := minirmq.Run(t, minirmq.WithACL(minirmq.Account{AccessKey: creds.AccessKey, SecretKey: creds.SecretKey}))
	return &target{addr: srv.Addr(), srv: srv}, creds
}

func signed(req *rawCmd, ak, sk string) *rawCmd {
	if req.ExtFields == nil {
		req.ExtFields = map[string]string{}
	}
	req.ExtFields["AccessKey"] = ak
	keys := make([]string, 0, len(req.ExtFields))
	for k := range req.ExtFields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	mac := hmac.New(sha1.New, []byte(sk))
	for _, k := range keys {
		mac.Write([]byte(req.ExtFields[k]))
	}
	mac.Write(req.Body)
	req.ExtFields["Signature"] = base64.StdEncoding.EncodeToString(mac.Sum(nil))
	return req
}

func TestACLRejectsUnsignedAndWronglySignedRequests(t *testing.T) {
	tg, creds := aclTarget(t)
	broker := tg.brokerAddr(t) // name server requests need no signature
	maxOffset := func() *rawCmd {
		return &rawCmd{Code: 30, ExtFields: map[string]string{"topic": "TBW102", "queueId": "0"}}
	}
	const where = "org.apache.rocketmq.acl.plain.PlainPermissionManager.validate(PlainPermissionManager.java:"

	resp := rawRequest(t, broker, maxOffset())
	assert.EqualValues(t, 1, resp.Code)
	assert.Equal(t, "org.apache.rocketmq.acl.common.AclException: No accessKey is configured, "+where+"663)", resp.Remark)

	resp = rawRequest(t, broker, signed(maxOffset(), "nobody", "x"))
	assert.EqualValues(t, 1, resp.Code)
	assert.Equal(t, "org.apache.rocketmq.acl.common.AclException: No acl config for nobody, "+where+"667)", resp.Remark)

	resp = rawRequest(t, broker, signed(maxOffset(), creds.AccessKey, "wrong"))
	assert.EqualValues(t, 1, resp.Code)
	assert.Equal(t, "org.apache.rocketmq.acl.common.AclException: Check signature failed for accessKey="+creds.AccessKey+", "+where+"683)", resp.Remark)

	resp = rawRequest(t, broker, signed(maxOffset(), creds.AccessKey, creds.SecretKey))
	assert.EqualValues(t, 0, resp.Code, resp.Remark)
	assert.NotEmpty(t, resp.ExtFields["offset"])
}

func TestACLCredentialsFlowThroughTheClient(t *testing.T) {
	tg, creds := aclTarget(t)
	topic := unique("T")

	noCreds := tg.producer(t)
	_, err := noCreds.SendSync(context.Background(), newMsg(topic, "denied"))
	require.Error(t, err, "a producer without credentials is refused")

	p := tg.producer(t, producer.WithCredentials(creds))
	sendN(t, p, topic, 3, nil)

	var got received
	tg.pushConsumer(t, unique("G"), topic, "*", collectAll(&got), consumer.WithCredentials(creds))
	waitFor(t, "signed consumer to receive", 30*time.Second, func() bool { return got.len() == 3 })
	if tg.srv != nil {
		assert.Len(t, tg.srv.Messages(topic), 3)
		for _, m := range tg.srv.Messages(topic) {
			assert.NotEqual(t, "denied", string(m.Body))
		}
	}
}
