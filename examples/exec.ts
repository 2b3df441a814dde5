/**
 * Runs one command on a host with the Effect client.
 *
 *   SSH_HOST=127.0.0.1 SSH_PORT=22 SSH_USER=me SSH_KEY=~/.ssh/id_ed25519 SSH_FINGERPRINT=SHA256:... \
 *     node --import tsx examples/exec.ts "uname -a"
 */
import { readFileSync } from "node:fs"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { parsePrivateKey } from "../src/protocol/keys/privateKey.js"
import * as SshAuth from "../src/SshAuth.js"
import * as SshClient from "../src/SshClient.js"

const env = (name: string) => {
  const v = process.env[name]
  if (v === undefined) throw new Error(`set ${name}`)
  return v
}

const program = Effect.gen(function* () {
  const ssh = yield* SshClient.connect({
    host: env("SSH_HOST"),
    port: Number(process.env.SSH_PORT ?? 22),
    username: env("SSH_USER"),
    auth: [SshAuth.privateKey(parsePrivateKey(readFileSync(env("SSH_KEY"))))],
    // pin the server's key: nothing is trusted silently
    hostVerifier: (key) => key.fingerprint === env("SSH_FINGERPRINT")
  })
  const { stdout, code } = yield* ssh.exec(process.argv[2] ?? "uptime")
  yield* Console.log(new TextDecoder().decode(stdout).trimEnd())
  yield* Console.log(`exit status ${code}`)
}).pipe(Effect.scoped)

Effect.runPromise(program).catch((e) => {
  console.error(String(e))
  process.exitCode = 1
})
