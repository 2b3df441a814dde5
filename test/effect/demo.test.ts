/**
 * The README's main job: `npm run demo` (node --import tsx examples/demo.ts) must run on a
 * fresh machine and exit 0 after an exec and a shell through our own server.
 */
import { spawnSync } from "node:child_process"
import { expect, it } from "vitest"

it("npm run demo: server, client, exec and shell, exit 0", () => {
  const r = spawnSync(process.execPath, ["--import", "tsx", "examples/demo.ts"], { encoding: "utf8", timeout: 60_000 })
  expect(r.stderr).toBe("")
  expect(r.status).toBe(0)
  expect(r.stdout).toMatch(/^server {3}listening on 127\.0\.0\.1:\d+$/m)
  expect(r.stdout).toMatch(/host key ssh-ed25519 SHA256:\S{43} /)
  expect(r.stdout).toMatch(/client {3}connected, host key verified against the pinned fingerprint, authenticated with publickey in \d+ ms/)
  expect(r.stdout).toMatch(/kex \S+, host key ssh-ed25519, cipher \S+/)
  expect(r.stdout).toMatch(/exit status 3 after \d+ ms\n\s+\| hello from \S+ as \S+\n\s+\| stderr: and some stderr/)
  expect(r.stdout).toMatch(/shell on (\/dev\/pts\/\d+, size 30 100, TERM=xterm|no-tty, size n\/a, TERM=unset)/)
  expect(r.stdout).toMatch(/^done {5}in \d+ ms/m)
}, 90_000)
