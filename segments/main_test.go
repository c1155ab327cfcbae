package segments

import (
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
