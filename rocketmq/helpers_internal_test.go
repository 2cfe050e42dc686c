package rocketmq

import "github.com/apache/rocketmq-client-go/v2/primitive"

func credentials(ak, sk string) primitive.Credentials {
	return primitive.Credentials{AccessKey: ak, SecretKey: sk}
}
