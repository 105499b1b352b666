// Command kazpost-ferretdb runs FerretDB v1 (MongoDB wire protocol) embedded, backed by
// PostgreSQL or SQLite, for the local KazPost stack (see deploy/local/stack.sh).
//
// Upstream's own cmd/ferretdb cannot be built with `go install` (it needs generated files),
// so this small program embeds the public github.com/FerretDB/FerretDB/ferretdb package.
// Every flag defaults to an environment variable. It runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func main() {
	listen := flag.String("listen-addr", env("FERRETDB_LISTEN_ADDR", "127.0.0.1:27017"), "TCP listen address")
	handler := flag.String("handler", env("FERRETDB_HANDLER", "postgresql"), "backend: postgresql or sqlite")
	pgURL := flag.String("postgresql-url", env("FERRETDB_POSTGRESQL_URL", "postgres://127.0.0.1:5432/ferretdb"), "PostgreSQL URL (postgresql handler)")
	sqliteDir := flag.String("sqlite-dir", env("FERRETDB_SQLITE_DIR", "data"), "SQLite directory (sqlite handler)")
	logLevel := flag.String("log-level", env("FERRETDB_LOG_LEVEL", "WARN"), "slog level: DEBUG, INFO, WARN or ERROR")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail(fmt.Errorf("bad -log-level: %w", err))
	}
	text := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	logger := slog.New(&quietReplies{Handler: text})

	cfg := &ferretdb.Config{Listener: ferretdb.ListenerConfig{TCP: *listen}, Logger: logger, Handler: *handler}
	switch *handler {
	case "postgresql":
		cfg.PostgreSQLURL = *pgURL
	case "sqlite":
		// FerretDB wants an existing directory as a "file:" URI with a trailing slash.
		dir, err := filepath.Abs(*sqliteDir)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err != nil {
			fail(err)
		}
		cfg.SQLiteURL = "file:" + dir + "/"
	default:
		fail(fmt.Errorf("unknown -handler %q (want postgresql or sqlite)", *handler))
	}

	f, err := ferretdb.New(cfg)
	if err != nil {
		fail(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	fmt.Fprintf(os.Stderr, "kazpost-ferretdb: %s handler, listening on %s\n", *handler, *listen)
	if err := f.Run(ctx); err != nil {
		fail(err)
	}
	fmt.Fprintln(os.Stderr, "kazpost-ferretdb: stopped")
}

// quietReplies drops FerretDB's dump of every error reply sent to a client ("Response header"
// and "Response message", logged at WARN, e.g. a DuplicateKeyError or the driver's
// endSessions): clients see those errors themselves. Other warnings and errors pass.
type quietReplies struct{ slog.Handler }

func (q *quietReplies) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelError && strings.HasPrefix(r.Message, "Response ") {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q *quietReplies) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &quietReplies{Handler: q.Handler.WithAttrs(attrs)}
}

func (q *quietReplies) WithGroup(name string) slog.Handler {
	return &quietReplies{Handler: q.Handler.WithGroup(name)}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kazpost-ferretdb:", err)
	os.Exit(1)
}
