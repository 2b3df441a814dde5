/**
 * Resilient automation: connection attempts retried with exponential backoff, each bounded by
 * a timeout, and the command itself bounded too. Only connection-level failures are retried;
 * a rejected host key or failed authentication is final.
 *
 *   SSH_HOST=... SSH_USER=... SSH_KEY=... SSH_FINGERPRINT=... node --import tsx examples/retry.ts
 */
import { readFileSync } from "node:fs"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { parsePrivateKey } from "../src/protocol/keys/privateKey.js"
import * as SshAuth from "../src/SshAuth.js"
import * as SshClient from "../src/SshClient.js"

const connect = SshClient.connect({
  host: process.env.SSH_HOST ?? "127.0.0.1",
  port: Number(process.env.SSH_PORT ?? 22),
  username: process.env.SSH_USER ?? "root",
  auth: [SshAuth.privateKey(parsePrivateKey(readFileSync(process.env.SSH_KEY ?? `${process.env.HOME}/.ssh/id_ed25519`)))],
  hostVerifier: (key) => key.fingerprint === process.env.SSH_FINGERPRINT,
  readyTimeout: "5 seconds"
}).pipe(
  Effect.retry({
    schedule: Schedule.exponential("200 millis").pipe(Schedule.intersect(Schedule.recurs(4))),
    // retry what may pass (refused, timeout, dropped); give up at once on trust or credentials
    while: (e) => e._tag === "SshConnectError" || (e._tag === "SshTransportError" && e.reason === "connection-lost")
  })
)

const program = Effect.gen(function* () {
  const ssh = yield* connect
  const result = yield* ssh.exec("sleep 1; echo done").pipe(Effect.timeout("10 seconds"))
  yield* Console.log(new TextDecoder().decode(result.stdout).trim())
}).pipe(
  Effect.scoped,
  Effect.catchTags({
    SshAuthError: (e) => Console.error(`authentication failed: ${e.message}`),
    SshTransportError: (e) => Console.error(`transport failed (${e.reason}): ${e.message}`),
    SshConnectError: (e) => Console.error(`cannot connect (${e.reason}): ${e.message}`),
    TimeoutException: () => Console.error("the command took too long")
  })
)

Effect.runPromise(program)
