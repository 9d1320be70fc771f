// Package bottest is a stand-in for the Telegram Bot API's sendMessage, on
// loopback, for tests: it answers as the API does (ok, or an error_code
// with a description), refuses a chat that did not start the bot, and
// keeps the messages it took.
//
// Files, from the ground up:
//   - bottest.go: the stand-in and the messages it took.
package bottest
