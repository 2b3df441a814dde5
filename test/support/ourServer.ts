/**
 * Runs our SshServer for promise-style tests: started in its own scope, stopped by closing it.
 */
import { timingSafeEqual } from "node:crypto"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import type { SshPublicKey } from "../../src/protocol/keys/publicKey.js"
import * as SshServer from "../../src/SshServer.js"
import type { AuthContext, AuthDecision, Server, ServerOptions } from "../../src/SshServer.js"

export interface RunningServer {
  readonly server: Server
  readonly port: number
  readonly stop: () => Promise<void>
}

/** Starts a server listening on an ephemeral loopback port. */
export async function startServer(options: Omit<ServerOptions, "listen">): Promise<RunningServer> {
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(Scope.extend(SshServer.make({ ...options, listen: { host: "127.0.0.1", port: 0 } }), scope))
  return {
    server,
    port: server.address!.port,
    stop: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/**
 * An authenticate handler accepting `password` (password and keyboard-interactive) and the
 * given public keys, for any user name.
 */
export function passwordOrKeys(password: string, keys: ReadonlyArray<SshPublicKey> = []) {
  const same = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b))
  return (ctx: AuthContext): Effect.Effect<AuthDecision, SshServer.AuthCancelled> =>
    Effect.gen(function* () {
      switch (ctx.method) {
        case "password":
          return same(Redacted.value(ctx.password), password) ? SshServer.AuthDecision.accept : SshServer.AuthDecision.reject()
        case "keyboard-interactive": {
          const [answer] = yield* ctx.prompt([{ prompt: "Password: ", echo: false }])
          return answer !== undefined && same(answer, password) ? SshServer.AuthDecision.accept : SshServer.AuthDecision.reject()
        }
        case "publickey":
          return keys.some((k) => Buffer.from(k.blob).equals(ctx.key.blob)) ? SshServer.AuthDecision.accept : SshServer.AuthDecision.reject()
        default:
          return SshServer.AuthDecision.reject()
      }
    })
}
