package config

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/postgate/postgate/internal/delivery"
)

// Config is the whole configuration of a gateway process.
type Config struct {
	DatabaseURL          string
	RedisURL             string
	RedisClusterMode     bool
	HTTPAddr             string
	MetricsAddr          string
	AdminJWTSecret       string
	AdminJWTIssuer       string
	AdminJWTAudience     string
	SecretKey            []byte
	SecretKeyPrevious    []byte
	PublicURL            string
	CallbackAllowPrivate bool
	CallbackTimeout      time.Duration
	MaxBodyBytes         int
	DedupTTL             time.Duration
	RetrySchedule        []time.Duration
	DeliveryConcurrency  int
	// DeliveryLease is how long a claimed delivery stays held: a worker
	// killed mid-attempt leaves its claims to others after it. Zero means
	// CALLBACK_TIMEOUT + 30s.
	DeliveryLease     time.Duration
	TenantRate        int
	TenantBurst       int
	TenantConcurrency int
	// BreakerFailures, BreakerOpenFor and BreakerProbes tune each
	// endpoint's circuit breaker (see delivery.Config).
	BreakerFailures int
	BreakerOpenFor  time.Duration
	BreakerProbes   int
	// RetentionDelivered is how long delivered events (and their attempts)
	// are kept; RetentionDead the same for dead events.
	RetentionDelivered time.Duration
	RetentionDead      time.Duration
	LogLevel           slog.Level
	LogFormat          string
	// ShutdownDelay is how long readiness reports "draining" before the
	// listener closes, so load balancers stop sending new requests.
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the whole drain after the delay.
	ShutdownTimeout time.Duration
	// GraphAPIURL is Meta's Graph API; empty when GRAPH_API_URL is off
	// (no call to Meta).
	GraphAPIURL     string
	GraphAPIVersion string
	// HealthInterval is how often the Meta subscriptions are checked;
	// SilenceAfter the shortest silence that makes a Page silent.
	HealthInterval time.Duration
	SilenceAfter   time.Duration
	// ConsoleSessionTTL is how long a console sign-in lasts.
	ConsoleSessionTTL time.Duration
}

// GraphAPIOff is the GRAPH_API_URL value that turns every call to Meta off.
const GraphAPIOff = "off"

// DefaultGraphAPIVersion is the Graph API version the gateway speaks by
// default (GRAPH_API_VERSION).
const DefaultGraphAPIVersion = "v24.0"

// setting is one environment variable and the flag that mirrors it.
type setting struct {
	env    string
	def    string
	usage  string
	secret bool
	parse  func(c *Config, v string) error
}

var settings = []setting{
	{env: "DATABASE_URL", def: "postgres://postgres@127.0.0.1:5432/postgate?sslmode=disable", usage: "Postgres, the system of record", secret: true,
		parse: func(c *Config, v string) error { return parseURL(&c.DatabaseURL, v, "postgres", "postgresql") }},
	{env: "REDIS_URL", def: "redis://127.0.0.1:6379/0", usage: "Redis for dedup, rate limits and coordination (rediss:// for TLS)", secret: true,
		parse: func(c *Config, v string) error { return parseURL(&c.RedisURL, v, "redis", "rediss") }},
	{env: "REDIS_CLUSTER", def: "false", usage: "treat REDIS_URL as a Redis Cluster endpoint",
		parse: func(c *Config, v string) error { return parseBool(&c.RedisClusterMode, v) }},
	{env: "HTTP_ADDR", def: ":8080", usage: "webhook ingress, admin API, health",
		parse: func(c *Config, v string) error { return parseAddr(&c.HTTPAddr, v) }},
	{env: "METRICS_ADDR", def: ":9090", usage: "Prometheus /metrics",
		parse: func(c *Config, v string) error { return parseAddr(&c.MetricsAddr, v) }},
	{env: "ADMIN_JWT_SECRET", usage: "HS256 key for admin-API tokens (required unless --dev)", secret: true,
		parse: func(c *Config, v string) error {
			if v != "" && len(v) < 32 {
				return fmt.Errorf("must be at least 32 characters, got %d", len(v))
			}
			c.AdminJWTSecret = v
			return nil
		}},
	{env: "ADMIN_JWT_ISSUER", def: "postgate", usage: "required iss of admin tokens",
		parse: func(c *Config, v string) error { return parseNonEmpty(&c.AdminJWTIssuer, v) }},
	{env: "ADMIN_JWT_AUDIENCE", def: "postgate-admin", usage: "required aud of admin tokens",
		parse: func(c *Config, v string) error { return parseNonEmpty(&c.AdminJWTAudience, v) }},
	{env: "SECRET_KEY", usage: "base64 of 32 bytes; encrypts secrets at rest (required unless --dev)", secret: true,
		parse: func(c *Config, v string) error { return parseKey(&c.SecretKey, v) }},
	{env: "SECRET_KEY_PREVIOUS", usage: "the key before the last rotation, still used to decrypt", secret: true,
		parse: func(c *Config, v string) error { return parseKey(&c.SecretKeyPrevious, v) }},
	{env: "PUBLIC_URL", def: "http://localhost:8080", usage: "how Meta reaches the gateway; used to print webhook URLs",
		parse: func(c *Config, v string) error {
			if err := parseURL(&c.PublicURL, v, "http", "https"); err != nil {
				return err
			}
			c.PublicURL = strings.TrimRight(c.PublicURL, "/")
			return nil
		}},
	{env: "CALLBACK_ALLOW_PRIVATE", def: "false", usage: "allow callbacks to loopback, private, link-local and metadata addresses",
		parse: func(c *Config, v string) error { return parseBool(&c.CallbackAllowPrivate, v) }},
	{env: "CALLBACK_TIMEOUT", def: formatDuration(delivery.DefaultTimeout), usage: "per delivery attempt",
		parse: func(c *Config, v string) error {
			return parseDuration(&c.CallbackTimeout, v, time.Second, 5*time.Minute)
		}},
	{env: "MAX_BODY_BYTES", def: "8388608", usage: "larger webhook bodies get 413",
		parse: func(c *Config, v string) error { return parseInt(&c.MaxBodyBytes, v, 1024, 1<<30) }},
	{env: "DEDUP_TTL", def: "72h", usage: "how long an event key is remembered",
		parse: func(c *Config, v string) error { return parseDuration(&c.DedupTTL, v, time.Minute, 90*24*time.Hour) }},
	{env: "RETRY_SCHEDULE", def: formatSchedule(delivery.DefaultRetrySchedule), usage: "delay before each retry; ±20% jitter",
		parse: func(c *Config, v string) error { return parseSchedule(&c.RetrySchedule, v) }},
	{env: "DELIVERY_CONCURRENCY", def: strconv.Itoa(delivery.DefaultConcurrency), usage: "in-flight callback requests per worker process",
		parse: func(c *Config, v string) error { return parseInt(&c.DeliveryConcurrency, v, 1, 100000) }},
	{env: "DELIVERY_LEASE", def: "", usage: "how long a claimed delivery is held before another worker may take it (a crashed worker's claims come back after it); empty: CALLBACK_TIMEOUT + 30s",
		parse: func(c *Config, v string) error {
			if v == "" {
				return nil
			}
			return parseDuration(&c.DeliveryLease, v, 6*time.Second, time.Hour)
		}},
	{env: "TENANT_RATE", def: strconv.Itoa(delivery.DefaultTenantRate), usage: "default forwarding rate per tenant (events/s)",
		parse: func(c *Config, v string) error { return parseInt(&c.TenantRate, v, 1, 1000000) }},
	{env: "TENANT_BURST", def: strconv.Itoa(delivery.DefaultTenantBurst), usage: "default forwarding burst per tenant",
		parse: func(c *Config, v string) error { return parseInt(&c.TenantBurst, v, 1, 1000000) }},
	{env: "TENANT_CONCURRENCY", def: strconv.Itoa(delivery.DefaultTenantConcurrency), usage: "default in-flight deliveries per tenant, in each worker process",
		parse: func(c *Config, v string) error { return parseInt(&c.TenantConcurrency, v, 1, 100000) }},
	{env: "BREAKER_FAILURES", def: strconv.Itoa(delivery.DefaultBreakerFailures), usage: "consecutive failed attempts that open an endpoint's circuit breaker (its events then wait, unattempted)",
		parse: func(c *Config, v string) error { return parseInt(&c.BreakerFailures, v, 1, 1000) }},
	{env: "BREAKER_OPEN_FOR", def: formatDuration(delivery.DefaultBreakerOpenFor), usage: "how long an open breaker holds an endpoint's events before letting probes through",
		parse: func(c *Config, v string) error { return parseDuration(&c.BreakerOpenFor, v, time.Second, time.Hour) }},
	{env: "BREAKER_PROBES", def: strconv.Itoa(delivery.DefaultBreakerProbes), usage: "attempts a half-open breaker lets through; that many successes in a row close it, one failure opens it again",
		parse: func(c *Config, v string) error { return parseInt(&c.BreakerProbes, v, 1, 100) }},
	{env: "RETENTION_DELIVERED", def: formatDuration(delivery.DefaultRetainDelivered), usage: "how long delivered events and their attempts are kept",
		parse: func(c *Config, v string) error {
			return parseDuration(&c.RetentionDelivered, v, time.Minute, 10*365*24*time.Hour)
		}},
	{env: "RETENTION_DEAD", def: formatDuration(delivery.DefaultRetainDead), usage: "how long dead events and their attempts are kept",
		parse: func(c *Config, v string) error {
			return parseDuration(&c.RetentionDead, v, time.Minute, 10*365*24*time.Hour)
		}},
	{env: "GRAPH_API_URL", def: "https://graph.facebook.com", usage: "Meta's Graph API, for app ownership checks, webhook set-up and health checks; off disables every call to Meta (the default under --dev)",
		parse: func(c *Config, v string) error {
			if v == GraphAPIOff {
				c.GraphAPIURL = ""
				return nil
			}
			if err := parseURL(&c.GraphAPIURL, v, "http", "https"); err != nil {
				return fmt.Errorf("%w, or off", err)
			}
			c.GraphAPIURL = strings.TrimRight(c.GraphAPIURL, "/")
			return nil
		}},
	{env: "GRAPH_API_VERSION", def: DefaultGraphAPIVersion, usage: "the Graph API version path segment",
		parse: func(c *Config, v string) error {
			if !reGraphVersion.MatchString(v) {
				return fmt.Errorf("must look like v24.0, got %q", v)
			}
			c.GraphAPIVersion = v
			return nil
		}},
	{env: "HEALTH_INTERVAL", def: "5m", usage: "how often the Meta subscription health of every app and Page is checked",
		parse: func(c *Config, v string) error { return parseDuration(&c.HealthInterval, v, time.Second, 24*time.Hour) }},
	{env: "SILENCE_AFTER", def: "1h", usage: "the shortest silence that can make a Page silent",
		parse: func(c *Config, v string) error { return parseDuration(&c.SilenceAfter, v, time.Minute, 7*24*time.Hour) }},
	{env: "CONSOLE_SESSION_TTL", def: "12h", usage: "how long a console sign-in lasts",
		parse: func(c *Config, v string) error {
			return parseDuration(&c.ConsoleSessionTTL, v, time.Minute, 30*24*time.Hour)
		}},
	{env: "LOG_LEVEL", def: "info", usage: "debug, info, warn or error",
		parse: func(c *Config, v string) error {
			if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
				return fmt.Errorf("must be debug, info, warn or error, got %q", v)
			}
			return nil
		}},
	{env: "LOG_FORMAT", def: "json", usage: "json or text",
		parse: func(c *Config, v string) error {
			if v != "json" && v != "text" {
				return fmt.Errorf("must be json or text, got %q", v)
			}
			c.LogFormat = v
			return nil
		}},
	{env: "SHUTDOWN_DELAY", def: "5s", usage: "how long /readyz reports draining before the listener closes",
		parse: func(c *Config, v string) error { return parseDuration(&c.ShutdownDelay, v, 0, 5*time.Minute) }},
	{env: "SHUTDOWN_TIMEOUT", def: formatDuration(delivery.DefaultShutdownTimeout), usage: "deadline for in-flight requests and deliveries to finish",
		parse: func(c *Config, v string) error {
			return parseDuration(&c.ShutdownTimeout, v, time.Second, 10*time.Minute)
		}},
}

var reGraphVersion = regexp.MustCompile(`^v[0-9]{1,3}\.[0-9]{1,3}$`)

// FlagName is the command-line flag that mirrors an environment variable:
// DATABASE_URL becomes --database-url.
func FlagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(env), "_", "-")
}

// Loader collects the raw values from the environment and the flags of a
// flag set, and parses them into a Config.
type Loader struct {
	raw map[string]*string
}

// Bind registers one flag per setting on fs, with the environment (through
// getenv) as the default, so a flag overrides the variable.
func Bind(fs *flag.FlagSet, getenv func(string) string) *Loader {
	l := &Loader{raw: make(map[string]*string, len(settings))}
	for _, s := range settings {
		def := s.def
		if v, ok := lookup(getenv, s.env); ok {
			def = v
		}
		usage := fmt.Sprintf("%s (env %s)", s.usage, s.env)
		if s.def != "" && !s.secret {
			usage += fmt.Sprintf(", default %q", s.def)
		}
		v := def
		l.raw[s.env] = &v
		fs.Func(FlagName(s.env), usage, func(val string) error { *l.raw[s.env] = val; return nil })
	}
	return l
}

// Set overrides one raw value before Load, as --dev does for generated keys.
func (l *Loader) Set(env, value string) { *l.raw[env] = value }

// Get returns the raw value of a setting.
func (l *Loader) Get(env string) string { return *l.raw[env] }

// Load parses every setting. All problems are reported together, each
// naming its variable, so a user fixes them in one go.
func (l *Loader) Load() (Config, error) {
	var c Config
	var errs []error
	for _, s := range settings {
		v := strings.TrimSpace(*l.raw[s.env])
		if err := s.parse(&c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s %w", s.env, err))
		}
	}
	if c.DeliveryLease != 0 && c.CallbackTimeout != 0 && c.DeliveryLease < c.CallbackTimeout+delivery.MinLeaseMargin {
		errs = append(errs, fmt.Errorf("DELIVERY_LEASE must exceed CALLBACK_TIMEOUT (%s) by at least 5s, or a slow attempt could be claimed twice; got %s",
			c.CallbackTimeout, c.DeliveryLease))
	}
	return c, errors.Join(errs...)
}

// Require reports the settings that must be present for serving, outside
// --dev: the JWT secret and the secret key.
func (c Config) Require() error {
	var errs []error
	if c.AdminJWTSecret == "" {
		errs = append(errs, errors.New("ADMIN_JWT_SECRET is required (at least 32 characters; `gateway serve --dev` generates one)"))
	}
	if len(c.SecretKey) == 0 {
		errs = append(errs, errors.New("SECRET_KEY is required (base64 of 32 bytes, e.g. `openssl rand -base64 32`)"))
	}
	return errors.Join(errs...)
}

// LogAttrs returns every setting as log attributes, secrets masked.
func (l *Loader) LogAttrs() []any {
	attrs := make([]any, 0, len(settings))
	for _, s := range settings {
		v := *l.raw[s.env]
		if s.secret {
			v = mask(s.env, v)
		}
		attrs = append(attrs, slog.String(s.env, v))
	}
	return attrs
}

// mask hides a secret: URLs keep scheme, host and path but lose the
// password; other secrets show only whether they are set.
func mask(env, v string) string {
	if v == "" {
		return ""
	}
	if strings.HasSuffix(env, "_URL") {
		if u, err := url.Parse(v); err == nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			}
			return u.Redacted()
		}
	}
	return "(set)"
}

func lookup(getenv func(string) string, key string) (string, bool) {
	v := getenv(key)
	return v, v != ""
}

func parseURL(dst *string, v string, schemes ...string) error {
	u, err := url.Parse(v)
	if err != nil {
		return fmt.Errorf("is not a URL: %v", redactURLError(err))
	}
	for _, s := range schemes {
		if u.Scheme == s {
			*dst = v
			return nil
		}
	}
	return fmt.Errorf("must be a %s:// URL, got scheme %q", strings.Join(schemes, ":// or "), u.Scheme)
}

// redactURLError drops the URL from a url.Error: it may hold a password.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func parseAddr(dst *string, v string) error {
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return fmt.Errorf("must be host:port or :port, got %q", v)
	}
	if p, err := strconv.Atoi(v[i+1:]); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("has no valid port: %q", v)
	}
	*dst = v
	return nil
}

func parseNonEmpty(dst *string, v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	*dst = v
	return nil
}

func parseBool(dst *bool, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("must be true or false, got %q", v)
	}
	*dst = b
	return nil
}

func parseInt(dst *int, v string, min, max int) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("must be a whole number, got %q", v)
	}
	if n < min || n > max {
		return fmt.Errorf("must be between %d and %d, got %d", min, max, n)
	}
	*dst = n
	return nil
}

func parseDuration(dst *time.Duration, v string, min, max time.Duration) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("must be a duration such as 10s or 2m, got %q", v)
	}
	if d < min || d > max {
		return fmt.Errorf("must be between %s and %s, got %s", min, max, d)
	}
	*dst = d
	return nil
}

func parseSchedule(dst *[]time.Duration, v string) error {
	var out []time.Duration
	for i, part := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d <= 0 {
			return fmt.Errorf("item %d must be a positive duration such as 30s, got %q", i+1, part)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return errors.New("must list at least one delay")
	}
	*dst = out
	return nil
}

func parseKey(dst *[]byte, v string) error {
	if v == "" {
		*dst = nil
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(v)
	}
	if err != nil {
		return errors.New("must be base64 of 32 bytes, but it is not valid base64")
	}
	if len(b) != 32 {
		return fmt.Errorf("must be base64 of 32 bytes, got %d bytes", len(b))
	}
	*dst = b
	return nil
}

// formatDuration writes d as a person would in a setting: 168h, 2m, 10s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// formatSchedule writes a retry schedule as RETRY_SCHEDULE takes it.
func formatSchedule(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = formatDuration(d)
	}
	return strings.Join(parts, ",")
}
