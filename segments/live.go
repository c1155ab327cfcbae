package segments

import (
	"context"
	"errors"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/redis/go-redis/v9"
)

// Live returns the ids of every live contact (contacts:all).
func (s *Store) Live(ctx context.Context) (*roaring.Bitmap, error) {
	b, err := s.rdb.Get(ctx, s.kAll()).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read contacts: %w", err)
	}
	return bitmapFromRedis(b), nil
}
