// Package smtptest runs a real mail server for tests: Debian's aiosmtpd
// (apt-get install python3-aiosmtpd) on a free loopback port, keeping each
// message it accepts in a Maildir the test reads. Without it a test is
// skipped, unless SPELLS_REQUIRE_SMTP=1 (set by .ci/run, which installs
// it).
//
// Files, from the ground up:
//   - smtptest.go: aiosmtpd on a free port, and the mails it keeps.
package smtptest
