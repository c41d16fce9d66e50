package service

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// Subscription is an ARM subscription served here.
type Subscription struct {
	ID          string `json:"subscriptionId"`
	DisplayName string `json:"displayName"`
	TenantID    string `json:"tenantId"`
}

// Config configures a [Service].
type Config struct {
	Meta   meta.Store
	Engine *engine.Engine
	// Subscriptions are the subscriptions that exist; the first start's
	// default subscription is among them.
	Subscriptions []Subscription
	Regions       []Region
	Policy        Policy
	// Now is the clock for grants, rate windows and timestamps.
	Now    func() time.Time
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the default regions and policy.
func DefaultConfig() Config {
	return Config{Regions: DefaultRegions(), Policy: DefaultPolicy()}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Meta == nil || c.Engine == nil:
		return errors.New("service: Config.Meta and Config.Engine are required")
	case len(c.Subscriptions) == 0:
		return errors.New("service: at least one subscription is required")
	case len(c.Regions) == 0:
		return errors.New("service: at least one region is required")
	}
	return c.Policy.Validate()
}

// Service applies the domain rules. It is safe for concurrent use, and
// several Services (in one process or several) may share one pair of
// stores: each domain operation is one metadata transaction that loads
// what it needs, checks every rule and writes its records and the
// engine's together. The store serializes them, so a rule read in a
// transaction still holds when it commits; no lock of the Service's own
// stands guard. A transaction's closure may run more than once, so it
// changes nothing outside its transaction; work that follows a commit
// (replication, collecting deleted blocks, a queued copy) starts after it.
type Service struct {
	cfg     Config
	meta    meta.Store
	engine  *engine.Engine
	subs    []Subscription
	regions map[string]Region
	policy  Policy
	now     func() time.Time
	log     *slog.Logger

	copies copier
}

// Open opens the service on its stores and removes engine images that no
// record references (left by a crash between the two).
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{
		cfg:     cfg,
		meta:    cfg.Meta,
		engine:  cfg.Engine,
		subs:    cfg.Subscriptions,
		regions: make(map[string]Region),
		policy:  cfg.Policy,
		now:     cfg.Now,
		log:     cfg.Logger,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, r := range cfg.Regions {
		s.regions[NormalizeLocation(r.Name)] = r
	}
	if err := s.reconcile(ctx); err != nil {
		return nil, err
	}
	if err := s.failInterrupted(ctx); err != nil {
		return nil, err
	}
	if err := s.detachAll(ctx); err != nil {
		return nil, err
	}
	if err := s.endSystemGrants(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Config returns the configuration the service was opened with.
func (s *Service) Config() Config { return s.cfg }

// Now returns the service's clock's time.
func (s *Service) Now() time.Time { return s.now() }

// Policy returns the rules in force.
func (s *Service) Policy() Policy { return s.policy }

// Engine returns the engine holding the resources' data, for the data
// plane.
func (s *Service) Engine() *engine.Engine { return s.engine }
