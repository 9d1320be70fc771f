package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spells-dev/spells/protocol"
)

type baselineParams struct {
	Users    int
	DSN      string
	Interval time.Duration // the old design's sweep interval (60s)
}

// baseline compares Spells with the design it replaces, on the same users,
// triggers and ticks. The old design keeps every user's triggers in one
// PostgreSQL table; one evaluator sweeps all of them on each tick (here
// right at the tick, its best case; in production every Interval) and
// writes the intents of the crossed ones to an outbox table, in one
// transaction. Spells gets one vault per user with the same trigger and
// the same ticks through its signal ingest.
func baseline(ctx context.Context, n *node, p baselineParams) (*Report, error) {
	r := newReport("baseline", map[string]any{"users": p.Users, "interval": p.Interval.String()})
	sig := fmt.Sprintf("BASE%d/USD", rand.IntN(1e9))
	// One connection does the sweeps and reads the statistics, so it can
	// flush its own counters first (pg_stat_force_next_flush).
	db, err := pgx.Connect(ctx, p.DSN)
	if err != nil {
		return nil, fmt.Errorf("baseline db: %w", err)
	}
	defer db.Close(context.Background())
	// The run's tables live in a schema of their own, so that two runs on
	// one database (a bench run and the test suite, say) cannot see each
	// other's rows. The database-wide load counters are still shared.
	schema := pgx.Identifier{fmt.Sprintf("spells_bench_%d", rand.IntN(1e9))}.Sanitize()
	if _, err := db.Exec(ctx, "CREATE SCHEMA "+schema+"; SET search_path TO "+schema); err != nil {
		return nil, fmt.Errorf("baseline schema: %w", err)
	}
	defer db.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	if err := setupBaseline(ctx, db, sig, p.Users); err != nil {
		return nil, err
	}
	// Spells: the same users and trigger.
	if err := n.publish(ctx, tick{Name: sig, Value: 2000, At: time.Now().UnixMilli()}); err != nil {
		return nil, err
	}
	var made atomic.Int64
	users, err := newUsers(ctx, n, p.Users, 0, func(ctx context.Context, u *user) error {
		_, err := u.c.Command(ctx, u.s, protocol.OpTriggerCreate, below(sig, threshold(int(made.Add(1)-1))))
		return err
	})
	closeAll(users)
	if err != nil {
		return nil, err
	}
	// A tick that crosses nothing, one that crosses 1 % of the triggers,
	// then one that crosses all the others.
	few := (p.Users + 99) / 100
	for _, t := range []struct {
		name  string
		value float64
		fires int
	}{{"quiet", 1500, 0}, {"few", 995, few}, {"crossing", 900, p.Users - few}} {
		if err := compareTick(ctx, r, n, db, sig, t.name, t.value, t.fires, p); err != nil {
			return nil, err
		}
		if s, b := r.Results[t.name+"_spells_ms"], r.Results[t.name+"_baseline_sweep_ms"]; s > 0 {
			r.set(t.name+"_speedup_vs_sweep", b/s)
			r.set(t.name+"_speedup_vs_scheduled", (float64(p.Interval.Milliseconds())/2+b)/s)
		}
		for _, q := range []string{"p50", "p99"} {
			if s := r.Results[t.name+"_spells_"+q+"_ms"]; s > 0 {
				r.set(t.name+"_speedup_"+q+"_vs_scheduled", r.Results[t.name+"_scheduled_"+q+"_ms"]/s)
			}
		}
	}
	r.note("baseline_sweep is the evaluator run right at the tick (its best case); scheduled adds the mean wait for a %s sweep (%s); scheduled p50/p99 are the users' reaction times with the sweep every %s", p.Interval, p.Interval/2, p.Interval)
	r.note("spells p50/p99/ms: when half, 99 %% and all of the crossed users' intents were written, from the tick")
	return r, nil
}

// journaled counts the firings a node wrote to its firing journal.
const journaled = "spells_firing_journal_records_total"

// waitGauge waits until the node's gauge reads want, and returns when it
// was seen so (zero: not within limit).
func waitGauge(ctx context.Context, n *node, name string, want float64, limit time.Duration) time.Time {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if m, err := n.metrics(ctx); err == nil && m[name] == want {
			return time.Now()
		}
		time.Sleep(n.poll)
	}
	return time.Time{}
}

func setupBaseline(ctx context.Context, db *pgx.Conn, sig string, users int) error {
	_, err := db.Exec(ctx, `
		DROP TABLE IF EXISTS bench_outbox; DROP TABLE IF EXISTS bench_triggers;
		CREATE TABLE bench_triggers (id bigserial PRIMARY KEY, user_id bigint NOT NULL, signal text NOT NULL,
			op text NOT NULL, threshold double precision NOT NULL, known boolean NOT NULL DEFAULT false,
			met boolean NOT NULL DEFAULT false, fires bigint NOT NULL DEFAULT 0, action jsonb NOT NULL);
		CREATE TABLE bench_outbox (id bigserial PRIMARY KEY, trigger_id bigint NOT NULL, user_id bigint NOT NULL,
			idem_key text NOT NULL UNIQUE, action jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());`)
	if err != nil {
		return fmt.Errorf("baseline schema: %w", err)
	}
	rows := make([][]any, users)
	for i := range rows {
		rows[i] = []any{int64(i), sig, protocol.OpBelow, threshold(i), `{"kind":"swap","params":{"sell":"USDC","buy":"ETH","amount":"1"}}`}
	}
	_, err = db.CopyFrom(ctx, pgx.Identifier{"bench_triggers"}, []string{"user_id", "signal", "op", "threshold", "action"}, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("baseline rows: %w", err)
	}
	_, err = sweep(ctx, db, sig, 2000)
	return err
}

// threshold is user i's trigger threshold in both designs: 1000 for one
// user in a hundred, 990 for the others.
func threshold(i int) float64 {
	if i%100 == 0 {
		return 1000
	}
	return 990
}

// sweep is the old design's evaluator: read every trigger on the signal,
// evaluate each in the application, and in one transaction update the
// changed ones and write the intents of the fired ones to the outbox.
func sweep(ctx context.Context, db *pgx.Conn, sig string, value float64) (fired int, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `SELECT id, user_id, op, threshold, known, met, fires, action FROM bench_triggers WHERE signal = $1`, sig)
	if err != nil {
		return 0, err
	}
	type change struct {
		id, user, fires int64
		met, fire       bool
		action          []byte
	}
	var changes []change
	for rows.Next() {
		var c change
		var op string
		var thr float64
		var known, met bool
		if err := rows.Scan(&c.id, &c.user, &op, &thr, &known, &met, &c.fires, &c.action); err != nil {
			return 0, err
		}
		now := value < thr
		if op == protocol.OpAbove {
			now = value > thr
		}
		if !known || now != met {
			c.met, c.fire = now, known && !met && now
			changes = append(changes, c)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	batch := &pgx.Batch{}
	for _, c := range changes {
		fires := c.fires
		if c.fire {
			fires++
			fired++
			batch.Queue(`INSERT INTO bench_outbox (trigger_id, user_id, idem_key, action) VALUES ($1, $2, $3, $4)`,
				c.id, c.user, fmt.Sprintf("%d/%d", c.id, fires), c.action)
		}
		batch.Queue(`UPDATE bench_triggers SET known = true, met = $2, fires = $3 WHERE id = $1`, c.id, c.met, fires)
	}
	if batch.Len() > 0 {
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return 0, err
		}
	}
	return fired, tx.Commit(ctx)
}

// pgLoad reads the database's cumulative work counters.
func pgLoad(ctx context.Context, db *pgx.Conn) (map[string]float64, error) {
	// Flush this backend's pending counters at the end of the next
	// transaction (the SELECT 1), so the view is current.
	if _, err := db.Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
		return nil, fmt.Errorf("flush stats: %w", err)
	}
	if _, err := db.Exec(ctx, `SELECT 1`); err != nil {
		return nil, err
	}
	var commits, returned, fetched, inserted, updated, blocks float64
	err := db.QueryRow(ctx, `SELECT xact_commit, tup_returned, tup_fetched, tup_inserted, tup_updated, blks_hit + blks_read
		FROM pg_stat_database WHERE datname = current_database()`).Scan(&commits, &returned, &fetched, &inserted, &updated, &blocks)
	if err != nil {
		return nil, fmt.Errorf("pg_stat_database: %w", err)
	}
	return map[string]float64{"commits": commits, "rows_read": returned + fetched, "rows_written": inserted + updated, "blocks": blocks}, nil
}

// compareTick sends one value to both designs and records latency and
// database work for each.
func compareTick(ctx context.Context, r *Report, n *node, db *pgx.Conn, sig, name string, value float64, fires int, p baselineParams) error {
	before, err := pgLoad(ctx, db)
	if err != nil {
		return err
	}
	t0 := time.Now()
	fired, err := sweep(ctx, db, sig, value)
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	r.set(name+"_baseline_sweep_ms", float64(time.Since(t0).Microseconds())/1000)
	r.set(name+"_baseline_fired", float64(fired))
	after, err := pgLoad(ctx, db)
	if err != nil {
		return err
	}
	for k, v := range after {
		// The two statistics reads themselves are 3 transactions.
		r.set(name+"_baseline_db_"+k, v-before[k])
	}

	m0, err := n.usage(ctx)
	if err != nil {
		return err
	}
	t1 := time.Now()
	if err := n.publish(ctx, tick{Name: sig, Value: value, At: t1.UnixMilli()}); err != nil {
		return err
	}
	if fires > 0 {
		// Each user's reaction time is when its intent is written: the
		// times at which half, 99 % and all of the crossed users have
		// theirs are the p50, p99 and max of that latency.
		marks := waitMetricMarks(ctx, n, "spells_intents_total", m0.all["spells_intents_total"], float64(fires), []float64{0.5, 0.99, 1}, 5*time.Minute)
		for i, label := range []string{"_spells_p50_ms", "_spells_p99_ms", "_spells_ms"} {
			if marks[i].IsZero() {
				r.note("Spells did not write %s of the %d intents within 5 minutes", label, fires)
				continue
			}
			r.set(name+label, float64(marks[i].Sub(t1).Microseconds())/1000)
		}
		// The old design's users all react at the sweep that follows the
		// tick: uniformly within one interval, plus the sweep itself.
		sweepMs := r.Results[name+"_baseline_sweep_ms"]
		iv := float64(p.Interval.Milliseconds())
		r.set(name+"_scheduled_p50_ms", 0.5*iv+sweepMs)
		r.set(name+"_scheduled_p99_ms", 0.99*iv+sweepMs)
	} else {
		// The node handles signals one after the other: once a second
		// one (on a name nobody watches) is counted, the tick's dispatch
		// is over, and with it the count of vaults it woke.
		if err := n.publish(ctx, tick{Name: sig + "/MARK", Value: 1, At: time.Now().UnixMilli()}); err != nil {
			return err
		}
		if waitMetricMarks(ctx, n, "spells_signals_total", m0.all["spells_signals_total"], 2, []float64{1}, time.Minute)[0].IsZero() {
			r.note("the node did not count the %s tick within a minute", name)
		}
	}
	m1, _ := n.usage(ctx)
	// The node's CPU from the tick to the reading after its last intent
	// (or its mark): with the wall time, whether the tick was bound by the
	// node's two cores or by waiting (the disk's syncs).
	r.set(name+"_spells_node_cpu_ms", (m1.cpu-m0.cpu)*1000)
	r.set(name+"_spells_node_wall_ms", float64(m1.at.Sub(t1).Microseconds())/1000)
	if _, ok := m1.all[journaled]; ok && fires > 0 {
		// A node that fires hibernated vaults through its firing journal
		// has every intent durable before its vaults have applied them to
		// their files: wait for that too, so the next tick starts on a
		// quiet node, and report it.
		r.set(name+"_spells_journaled", m1.all[journaled]-m0.all[journaled])
		if at := waitGauge(ctx, n, "spells_firing_journal_pending", 0, 15*time.Minute); at.IsZero() {
			r.note("the %s tick's firings were not all applied to their vault files within 15 minutes", name)
		} else {
			m2, _ := n.usage(ctx)
			r.set(name+"_spells_applied_ms", float64(at.Sub(t1).Microseconds())/1000)
			r.set(name+"_spells_applied_node_cpu_ms", (m2.cpu-m0.cpu)*1000)
		}
	}
	r.set(name+"_spells_vaults_woken", m1.all["spells_signal_dispatch_total"]-m0.all["spells_signal_dispatch_total"])
	r.set(name+"_spells_transactions", m1.all["spells_vault_versions_total"]-m0.all["spells_vault_versions_total"])
	r.set(name+"_spells_intents", m1.all["spells_intents_total"]-m0.all["spells_intents_total"])
	return nil
}

func pingPostgres(ctx context.Context, dsn string) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	return c.Close(ctx)
}
