"""pyvm2's web server: a page, a JSON API, server-sent events and /metrics, run as the app
`pyvm2-web` and talking to the daemon over its socket."""
