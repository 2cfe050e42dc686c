package minirmq

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"sort"
)

// Account is an ACL identity, like an account of the broker's plain_acl.yml with admin rights.
type Account struct {
	AccessKey string
	SecretKey string
}

// WithACL turns on access control (aclEnable): every broker request must carry one of these
// access keys and a valid signature, else it is refused with SYSTEM_ERROR and the real broker's
// AclException remark. Name server requests stay open, as on a real name server.
func WithACL(accounts ...Account) Option {
	return func(c *config) {
		c.acl = make(map[string]string, len(accounts))
		for _, a := range accounts {
			c.acl[a.AccessKey] = a.SecretKey
		}
	}
}

// nameServerCodes are the requests a name server answers; ACL guards only the broker's.
var nameServerCodes = map[int16]bool{reqGetRouteInfoByTopic: true, reqGetBrokerClusterInfo: true,
	reqGetAllTopicList: true, reqDeleteTopicInNamesrv: true}

const (
	aclUniqueQueryFlag = "_UNIQUE_KEY_QUERY"
	aclFieldSignature  = "Signature"
	aclFieldAccessKey  = "AccessKey"
	aclLocation        = "org.apache.rocketmq.acl.plain.PlainPermissionManager.validate"
)

// checkACL verifies a request the way PlainPermissionManager.validate does: the access key
// must be known and the signature must be HMAC-SHA1 (base64) of the sorted extFields' values
// (without the signature and the unique-query flag) followed by the body.
func (s *Server) checkACL(req *command) *command {
	if s.cfg.acl == nil || nameServerCodes[req.Code] {
		return nil
	}
	ak := req.ExtFields[aclFieldAccessKey]
	if ak == "" {
		return aclDenied("No accessKey is configured", 663)
	}
	sk, ok := s.cfg.acl[ak]
	if !ok {
		return aclDenied("No acl config for "+ak, 667)
	}
	keys := make([]string, 0, len(req.ExtFields))
	for k := range req.ExtFields {
		if k != aclFieldSignature && k != aclUniqueQueryFlag {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	mac := hmac.New(sha1.New, []byte(sk))
	for _, k := range keys {
		mac.Write([]byte(req.ExtFields[k]))
	}
	mac.Write(req.Body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(req.ExtFields[aclFieldSignature])) {
		return aclDenied("Check signature failed for accessKey="+ak, 683)
	}
	return nil
}

func aclDenied(reason string, line int) *command {
	return errorf(codeSystemError, "org.apache.rocketmq.acl.common.AclException: %s, %s(PlainPermissionManager.java:%d)", reason, aclLocation, line)
}
