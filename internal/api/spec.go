package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"gopkg.in/yaml.v3"
)

// SpecYAML is the API's contract, OpenAPI 3.1.
//
//go:embed openapi.yaml
var SpecYAML []byte

var specJSON = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(SpecYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml as JSON: %w", err)
	}
	return b, nil
})

// SpecJSON is the contract as JSON, as GET /v1/openapi.json serves it.
func SpecJSON() ([]byte, error) { return specJSON() }

func (a *API) openAPI(c *call) error {
	b, err := SpecJSON()
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Cache-Control", "public, max-age=300")
	c.w.WriteHeader(http.StatusOK)
	_, err = c.w.Write(b)
	return err
}
