package vault

// Moving a vault between places (place.go): one setter, by the table.

// placeOf returns where vault id stands. m.mu is held.
func (m *Manager) placeOf(id string) spot {
	if s, ok := m.places[id]; ok {
		return s
	}
	return spot{}
}

// setPlaceLocked moves vault id to s.place (with s's details). A move the
// table does not allow is logged and counted (spells_vault_life_errors_total)
// and not made. It keeps the quarantine gauge in step. m.mu is held.
func (m *Manager) setPlaceLocked(id string, s spot) bool {
	from := m.placeOf(id).place
	if from != s.place && !placeAllowed(from, s.place) {
		m.metrics.LifeErrors.Inc()
		m.cfg.Logger.Error().Str("vault", id).Stringer("from", from).Stringer("to", s.place).Msg("vault place: move not allowed")
		return false
	}
	if s.place == nowhere {
		delete(m.places, id)
	} else {
		m.places[id] = s
	}
	if from == quarantined {
		m.quarantinedN--
	}
	if s.place == quarantined {
		m.quarantinedN++
	}
	m.metrics.Quarantined.Set(float64(m.quarantinedN))
	return true
}

// setPlace is setPlaceLocked for a caller that does not hold m.mu.
func (m *Manager) setPlace(id string, s spot) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.setPlaceLocked(id, s)
}

// inPlace lists the vaults in place p.
func (m *Manager) inPlace(p place) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id, s := range m.places {
		if s.place == p {
			out = append(out, id)
		}
	}
	return out
}
