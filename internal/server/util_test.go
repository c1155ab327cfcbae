package server

import (
	"strconv"
	"time"
)

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
func nowUnix() string      { return strconv.FormatInt(time.Now().Unix(), 10) }
