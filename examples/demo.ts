/**
 * The self-contained demo (`npm run demo`): an effect-ssh server on an ephemeral loopback
 * port with freshly generated keys, and the effect-ssh client connecting to it, pinned to
 * the server's host key. It runs a command and a shell, and tells what happened.
 */
import { userInfo } from "node:os"
import * as Effect from "effect/Effect"
import { execSession, ptySupported } from "../src/node/ExecSession.js"
import { generatePrivateKey } from "../src/protocol/keys/privateKey.js"
import * as SshAuth from "../src/SshAuth.js"
import * as SshClient from "../src/SshClient.js"
import * as SshServer from "../src/SshServer.js"

const text = (b: Uint8Array) => new TextDecoder().decode(b)
// terminal control sequences (bracketed paste, colours) from an interactive shell are noise here
const indent = (s: string) =>
  s
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")
    .replace(/\r/g, "")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => `         | ${l}`)
    .join("\n")
const elapsed = (since: number) => `${Math.round(performance.now() - since)} ms`

const demo = Effect.gen(function* () {
  const started = performance.now()
  console.log("effect-ssh demo: an SSH server and an SSH client in one process, over loopback\n")

  const hostKey = generatePrivateKey("ed25519")
  const clientKey = generatePrivateKey("ed25519", { comment: "demo client" })
  const server = yield* SshServer.make({
    listen: { host: "127.0.0.1", port: 0 },
    hostKeys: [hostKey],
    // only the demo's client key gets in; the server verified its signature before asking
    authenticate: (ctx) =>
      Effect.succeed(
        ctx.method === "publickey" && Buffer.from(ctx.key.blob).equals(clientKey.publicKey.blob)
          ? SshServer.AuthDecision.accept
          : SshServer.AuthDecision.reject({ methods: ["publickey"] })
      ),
    authMethods: ["publickey"],
    // exec and shell requests become child processes of this user, as `effect-ssh serve --exec` does
    onSession: execSession()
  })
  const { host, port } = server.address!
  const pinned = server.hostKeys[0]!.fingerprint
  console.log(`server   listening on ${host}:${port}`)
  console.log(`         host key ssh-ed25519 ${pinned} (generated for this run)`)

  const connectStart = performance.now()
  const ssh = yield* SshClient.connect({
    host,
    port,
    username: userInfo().username,
    auth: [SshAuth.privateKey(clientKey)],
    hostVerifier: (key) => key.fingerprint === pinned
  })
  const a = ssh.algorithms
  console.log(`client   connected, host key verified against the pinned fingerprint, authenticated with publickey in ${elapsed(connectStart)}`)
  console.log(`         server says ${ssh.serverIdentification}`)
  console.log(`         kex ${a.kex}, host key ${a.hostKey}, cipher ${a.cipherC2S}${a.macC2S ? `, MAC ${a.macC2S}` : ""}, compression ${a.compressionC2S}${a.strict ? ", strict kex" : ""}`)

  const command = "echo \"hello from $(uname -s) as $(id -un)\"; echo 'and some stderr' >&2; exit 3"
  const execStart = performance.now()
  const result = yield* ssh.exec(command)
  console.log(`\nexec     ${command}`)
  console.log(`         exit status ${result.code} after ${elapsed(execStart)}`)
  console.log(`${indent(text(result.stdout))}\n${indent(`stderr: ${text(result.stderr)}`)}`)

  const pty = ptySupported()
  const shellStart = performance.now()
  const output = yield* Effect.scoped(
    Effect.gen(function* () {
      const shell = yield* ssh.shell(pty ? { pty: { term: "xterm", rows: 30, cols: 100 } } : {})
      yield* shell.write(`echo "shell on $(tty 2>/dev/null || echo no-tty), size $(stty size 2>/dev/null || echo n/a), TERM=\${TERM:-unset}"; exit 0\n`)
      const out = yield* SshClient.collect(shell.stdout)
      const exit = yield* shell.exit
      return { out: text(out), code: exit.code }
    })
  )
  console.log(`\nshell    ${pty ? "with a pty (util-linux script), 30 rows x 100 cols" : "without a pty (util-linux script is not installed)"}`)
  console.log(`         exit status ${output.code} after ${elapsed(shellStart)}`)
  console.log(indent(output.out.split("\n").filter((l) => l.includes("shell on ") && !l.includes("echo")).join("\n")))

  const stats = yield* server.stats
  console.log(`\nserver   ${stats.connections} connection open, ${stats.authenticated} authenticated`)
  console.log(`done     in ${elapsed(started)}; closing the client and the server`)
})

Effect.runPromise(Effect.scoped(demo)).then(
  () => {
    process.exitCode = 0
  },
  (e: unknown) => {
    console.error("demo failed:", e)
    process.exitCode = 1
  }
)
