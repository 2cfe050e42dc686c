package minirmq

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Request codes (RequestCode).
const (
	reqSendMessage              = 10
	reqPullMessage              = 11
	reqQueryMessage             = 12
	reqQueryConsumerOffset      = 14
	reqUpdateConsumerOffset     = 15
	reqUpdateAndCreateTopic     = 17
	reqUpdateBrokerConfig       = 25
	reqGetBrokerConfig          = 26
	reqGetBrokerRuntimeInfo     = 28
	reqSearchOffsetByTimestamp  = 29
	reqGetMaxOffset             = 30
	reqGetMinOffset             = 31
	reqGetEarliestMsgStoretime  = 32
	reqViewMessageByID          = 33
	reqHeartBeat                = 34
	reqUnregisterClient         = 35
	reqConsumerSendMsgBack      = 36
	reqEndTransaction           = 37
	reqGetConsumerListByGroup   = 38
	reqCheckTransactionState    = 39
	reqNotifyConsumerIdsChanged = 40
	reqLockBatchMQ              = 41
	reqUnlockBatchMQ            = 42
	reqGetRouteInfoByTopic      = 105
	reqGetBrokerClusterInfo     = 106
	reqGetAllSubscriptionGroup  = 201
	reqGetAllTopicConfig        = 21
	reqGetAllTopicList          = 206
	reqDeleteTopicInBroker      = 215
	reqDeleteTopicInNamesrv     = 216
	reqGetTopicStatsInfo        = 202
	reqGetConsumerConnList      = 203
	reqGetConsumeStats          = 208
	reqInvokeBrokerResetOffset  = 222
	reqQueryTopicConsumeByWho   = 300
	reqResetConsumerClientOff   = 220
	reqSendMessageV2            = 310
	reqSendBatchMessage         = 320
)

// Response codes (ResponseCode).
const (
	codeSuccess               = 0
	codeSystemError           = 1
	codeSystemBusy            = 2
	codeRequestNotSupported   = 3
	codeMessageIllegal        = 13
	codeServiceNotAvailable   = 14
	codeNoPermission          = 16
	codeTopicNotExist         = 17
	codePullNotFound          = 19
	codePullRetryImmediately  = 20
	codePullOffsetMoved       = 21
	codeQueryNotFound         = 22
	codeSubscriptionParseFail = 23
	codeSubscriptionNotExist  = 24
	codeConsumerNotOnline     = 206
)

func response(code int16, remark string) *command {
	return &command{Code: code, Remark: remark, ExtFields: map[string]string{}}
}

func success() *command { return response(codeSuccess, "") }

func errorf(code int16, format string, args ...any) *command {
	return response(code, fmt.Sprintf(format, args...))
}

func jsonBody(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own well-typed values are encoded here
	}
	return b
}

func withBody(cmd *command, body []byte) *command {
	cmd.Body = body
	return cmd
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// handle dispatches one request and returns its response, or nil when the response is sent
// later (a suspended pull).
func (s *Server) handle(c *conn, req *command) *command {
	if denied := s.checkACL(req); denied != nil {
		return denied
	}
	switch req.Code {
	case reqGetRouteInfoByTopic:
		return s.handleRoute(req)
	case reqGetBrokerClusterInfo:
		return s.handleClusterInfo()
	case reqGetAllTopicList:
		return s.handleTopicList()
	case reqSendMessage, reqSendMessageV2:
		return s.handleSend(c, req, false)
	case reqSendBatchMessage:
		return s.handleSend(c, req, true)
	case reqPullMessage:
		return s.handlePull(c, req)
	case reqQueryConsumerOffset:
		return s.handleQueryOffset(req)
	case reqUpdateConsumerOffset:
		return s.handleUpdateOffset(req)
	case reqSearchOffsetByTimestamp:
		return s.handleSearchOffset(req)
	case reqGetMaxOffset:
		return s.handleMinMaxOffset(req, true)
	case reqGetMinOffset:
		return s.handleMinMaxOffset(req, false)
	case reqHeartBeat:
		return s.handleHeartbeat(c, req)
	case reqUnregisterClient:
		return s.handleUnregister(req)
	case reqGetConsumerListByGroup:
		return s.handleConsumerList(req)
	case reqConsumerSendMsgBack:
		return s.handleSendBack(req)
	case reqEndTransaction:
		return s.handleEndTransaction(req)
	case reqLockBatchMQ:
		return s.handleLock(req)
	case reqUnlockBatchMQ:
		return s.handleUnlock(req)
	case reqUpdateAndCreateTopic:
		return s.handleCreateTopic(req)
	case reqDeleteTopicInBroker, reqDeleteTopicInNamesrv:
		return s.handleDeleteTopic(req)
	case reqUpdateBrokerConfig:
		return s.handleUpdateBrokerConfig(req)
	case reqGetBrokerConfig:
		return s.handleGetBrokerConfig()
	case reqGetAllSubscriptionGroup:
		return s.handleSubscriptionGroups()
	case reqGetBrokerRuntimeInfo:
		return s.handleRuntimeInfo()
	case reqGetTopicStatsInfo:
		return s.handleTopicStats(req)
	case reqGetConsumeStats:
		return s.handleConsumeStats(req)
	case reqGetConsumerConnList:
		return s.handleConsumerConnections(req)
	case reqQueryTopicConsumeByWho:
		return s.handleConsumeByWho(req)
	case reqGetEarliestMsgStoretime:
		return s.handleEarliestStoreTime(req)
	case reqViewMessageByID:
		return s.handleViewMessage(req)
	case reqQueryMessage:
		return s.handleQueryMessage(req)
	case reqInvokeBrokerResetOffset:
		return s.handleResetOffset(req)
	}
	return errorf(codeRequestNotSupported, " request type %d not supported", req.Code)
}
