package layer_test

import (
	"testing"

	"github.com/tapefs/tapefs/backend/layer"
	"github.com/tapefs/tapefs/backend/layer/layertest"
	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
)

func TestConformance(t *testing.T) {
	layertest.Run(t, func(t *testing.T, inner *blob.Bucket) driver.Bucket {
		return &layer.Base{Inner: inner}
	})
}
