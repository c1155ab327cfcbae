package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/throttle"
)

// ledgerFlags are the global flags of the consent ledger's checkpoints.
func ledgerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "ledger-signing-key", Usage: "Ed25519 key that signs the consent ledger's checkpoints: a key file, or a base64 seed (`herald ledger keygen`); the scheduler's leader checkpoints only with it", EnvVars: []string{"HERALD_LEDGER_SIGNING_KEY"}},
		&cli.DurationFlag{Name: "ledger-checkpoint-every", Value: time.Hour, Usage: "how often the scheduler's leader signs a checkpoint of the consent ledger's chain heads", EnvVars: []string{"HERALD_LEDGER_CHECKPOINT_EVERY"}},
	}
}

// ledgerConfig reads the ledger flags into cfg.
func ledgerConfig(c *cli.Context, cfg *app.Config) error {
	every := c.Duration("ledger-checkpoint-every")
	if every < time.Second {
		return usage("--ledger-checkpoint-every %s: want at least 1s (e.g. 1h)", every)
	}
	cfg.LedgerCheckpointEvery = every
	if s := c.String("ledger-signing-key"); s != "" {
		key, err := throttle.ParseLedgerKey(s)
		if err != nil {
			return usage("--ledger-signing-key (HERALD_LEDGER_SIGNING_KEY): %w", err)
		}
		cfg.LedgerKey = key
	}
	return nil
}

func publicKeyFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "public-key", Usage: "trusted public key of the checkpoints, base64 or hex, or a file holding it (repeat for keys rotated out); default: the public half of HERALD_LEDGER_SIGNING_KEY", EnvVars: []string{"HERALD_LEDGER_PUBLIC_KEY"}}
}

// trustedKeys returns the --public-key keys, else the public half of the signing key
// when one is configured; none when neither is.
func trustedKeys(c *cli.Context, cfg app.Config) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, s := range c.StringSlice("public-key") {
		k, err := throttle.ParseLedgerPublicKey(s)
		if err != nil {
			return nil, usage("--public-key: %w", err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 && cfg.LedgerKey != nil {
		keys = append(keys, cfg.LedgerKey.Public().(ed25519.PublicKey))
	}
	return keys, nil
}

func ledgerCommand() *cli.Command {
	return &cli.Command{
		Name:  "ledger",
		Usage: "the consent ledger's signed checkpoints: make a signing key, take a checkpoint now",
		Subcommands: []*cli.Command{{
			Name:  "keygen",
			Usage: "make an Ed25519 key pair for checkpoints: the private key for HERALD_LEDGER_SIGNING_KEY, the public key for auditors",
			Flags: []cli.Flag{&cli.StringFlag{Name: "out", Usage: "write the private key to this file (mode 0600) and the public key to FILE.pub, instead of printing the private key"}},
			Action: func(c *cli.Context) error {
				key, err := throttle.GenerateLedgerKey()
				if err != nil {
					return err
				}
				pub := key.Public().(ed25519.PublicKey)
				out := map[string]string{"key_id": throttle.LedgerKeyID(pub), "public_key": throttle.EncodeLedgerPublicKey(pub)}
				if f := c.String("out"); f != "" {
					if _, err := os.Stat(f); err == nil {
						return usage("--out %s: the file exists; a signing key is never overwritten", f)
					}
					if err := os.WriteFile(f, []byte(throttle.EncodeLedgerKey(key)+"\n"), 0o600); err != nil {
						return usage("--out: %w", err)
					}
					if err := os.WriteFile(f+".pub", []byte(out["public_key"]+"\n"), 0o644); err != nil {
						return usage("--out: %w", err)
					}
					out["private_key_file"], out["public_key_file"] = f, f+".pub"
				} else {
					out["private_key"] = throttle.EncodeLedgerKey(key)
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, out)
				}
				w := c.App.Writer
				if f := out["private_key_file"]; f != "" {
					fmt.Fprintf(w, "private key: %s (set HERALD_LEDGER_SIGNING_KEY=%s where the scheduler runs; keep it secret)\n", f, f)
				} else {
					fmt.Fprintf(w, "private key: %s\n  set HERALD_LEDGER_SIGNING_KEY to it (or to a file holding it) where the scheduler runs; keep it secret\n", out["private_key"])
				}
				fmt.Fprintf(w, "public key:  %s\n  give it to auditors: herald audit ledger --public-key %s\nkey id:      %s\n",
					out["public_key"], out["public_key"], out["key_id"])
				return nil
			},
		}, {
			Name: "checkpoint",
			Usage: "sign a checkpoint of the consent ledger now (the scheduler's leader does it every HERALD_LEDGER_CHECKPOINT_EVERY): " +
				"the heads of the chains that moved since the last one",
			Action: func(c *cli.Context) error {
				d, err := deps(c, app.Needs{Redis: true, ClickHouse: true})
				if err != nil {
					return err
				}
				defer d.Close()
				cp, err := d.Checkpointer()
				if err != nil {
					return usage("%w", err)
				}
				rep, err := cp.Checkpoint(c.Context)
				if errors.Is(err, throttle.ErrCheckpointBusy) {
					return fmt.Errorf("%w: try again in a moment", err)
				}
				if err != nil {
					return err
				}
				if jsonOut(c) {
					return printJSON(c.App.Writer, rep)
				}
				fmt.Fprintf(c.App.Writer, "checkpoint %d at %s: %d chain heads, digest %s, key %s\n",
					rep.Seq, fmtTime(rep.At), rep.Heads, rep.Digest, rep.KeyID)
				if rep.Skipped > 0 {
					fmt.Fprintf(c.App.Writer, "%d chains of unknown length left out: run `herald consent rebuild` once to count them\n", rep.Skipped)
				}
				return nil
			},
		}},
	}
}
