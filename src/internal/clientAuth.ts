import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import type { ClientAuthEvent } from "../protocol/auth/client.js"
import { certificateAlgorithm } from "../protocol/keys/algorithms.js"
import type { SshCertificate } from "../protocol/keys/certificateEncoding.js"
import { signatureAlgorithms } from "../protocol/keys/publicKey.js"
import type { SshPrivateKey } from "../protocol/keys/privateKey.js"
import type { ProtocolError } from "../protocol/wire/errors.js"
import type { AgentSigner, SshAuthMethod } from "../SshAuth.js"
import { methodName } from "../SshAuth.js"
import type { AuthAttempt } from "../SshError.js"
import { fromProtocolError, SshAuthError, SshTransportError } from "../SshError.js"
import type { Driver } from "./driver.js"

/** What the auth loop waits for: the server's answers, or the end of the connection. */
export type AuthSignal = ClientAuthEvent | { readonly _tag: "Closed"; readonly error?: ProtocolError }

type Outcome = { readonly _tag: "Success" } | { readonly _tag: "Failure"; readonly methods: ReadonlyArray<string>; readonly partialSuccess: boolean }

export interface ClientAuthContext {
  readonly driver: Driver
  readonly username: string
  readonly signals: Queue.Queue<AuthSignal>
  /** The server's `server-sig-algs` (RFC 8308), when it sent them. */
  readonly serverSigAlgs: () => ReadonlyArray<string> | undefined
  readonly onBanner?: (message: string) => void
  /** Opens an agent given as a socket path. */
  readonly openAgent: (path: string) => AgentSigner & { close(): void }
}

/**
 * Runs the client's authentication policy: `none` first (it is free and tells which
 * methods the server takes), then each configured method the server still accepts, in
 * order. RSA keys use the strongest signature algorithm the server announced and fall
 * back to the next one when refused. Fails with every attempt and answer listed.
 */
export const authenticate = (ctx: ClientAuthContext, methods: ReadonlyArray<SshAuthMethod>) =>
  Effect.gen(function* () {
    const attempts: AuthAttempt[] = []
    const auth = () => ctx.driver.endpoint.clientAuth

    const next: Effect.Effect<ClientAuthEvent, SshTransportError> = Effect.gen(function* () {
      for (;;) {
        const signal = yield* Queue.take(ctx.signals)
        if (signal._tag === "Closed") {
          return yield* Effect.fail(
            signal.error
              ? fromProtocolError(signal.error)
              : new SshTransportError({ reason: "closed", message: "connection closed during authentication" })
          )
        }
        if (signal._tag === "Banner") {
          ctx.onBanner?.(signal.message)
          continue
        }
        return signal
      }
    })
    const outcome = (e: ClientAuthEvent): Outcome => {
      if (e._tag === "Success" || e._tag === "Failure") return e
      throw new Error(`unexpected ${e._tag}`)
    }
    const send = (f: (a: ReturnType<typeof auth>) => void) => Effect.sync(() => ctx.driver.run(() => f(auth())))

    // the ssh-userauth service must be accepted first
    const accepted = yield* next
    if (accepted._tag !== "ServiceAccepted") {
      return yield* Effect.fail(new SshTransportError({ reason: "protocol", message: `expected SERVICE_ACCEPT, got ${accepted._tag}` }))
    }

    const rsaAlgorithms = (keyType: string): ReadonlyArray<string> => {
      const ours = signatureAlgorithms(keyType)
      const announced = ctx.serverSigAlgs()
      if (announced === undefined || ours.length === 1) return ours
      const usable = ours.filter((a) => announced.includes(a))
      return usable.length > 0 ? usable : ours.slice(-1)
    }

    // a certificate is offered under its certificate algorithm (rsa-sha2-512-cert-v01@openssh.com)
    // and signed in the plain format; server-sig-algs names only the plain algorithms
    const signedAttempt = (key: SshPrivateKey, certificate?: SshCertificate): Effect.Effect<Outcome, SshTransportError> =>
      Effect.gen(function* () {
        let last: Outcome = { _tag: "Failure", methods: [], partialSuccess: false }
        for (const plain of rsaAlgorithms(key.type)) {
          const algorithm = certificate ? certificateAlgorithm(plain) : plain
          const blob = certificate?.blob ?? key.publicKey.blob
          const data = auth().publicKeySignedData(ctx.username, algorithm, blob)
          const signature = key.sign(plain, data)
          yield* send((a) => a.publicKey(ctx.username, algorithm, blob, signature))
          last = outcome(yield* next)
          if (last._tag === "Success" || last.partialSuccess || !last.methods.includes("publickey")) return last
        }
        return last
      })

    const agentAttempt = (signer: AgentSigner): Effect.Effect<Outcome, SshTransportError | SshAuthError> =>
      Effect.gen(function* () {
        const identities = yield* Effect.tryPromise({
          try: () => signer.identities(),
          catch: (cause) =>
            new SshAuthError({ reason: "all-methods-failed", message: `the agent failed to list keys: ${String(cause)}`, attempts, methodsLeft: [], cause })
        })
        let last: Outcome = { _tag: "Failure", methods: ["publickey"], partialSuccess: false }
        for (const identity of identities) {
          for (const algorithm of rsaAlgorithms(identity.publicKey.type)) {
            const blob = identity.publicKey.blob
            yield* send((a) => a.publicKeyQuery(ctx.username, algorithm, blob))
            const answer = yield* next
            if (answer._tag !== "PublicKeyOk") {
              last = outcome(answer)
              if (last._tag === "Success" || !last.methods.includes("publickey")) return last
              continue
            }
            const data = auth().publicKeySignedData(ctx.username, algorithm, blob)
            const signature = yield* Effect.tryPromise({
              try: () => signer.sign(blob, data, algorithm),
              catch: (cause) =>
                new SshAuthError({ reason: "all-methods-failed", message: `the agent refused to sign: ${String(cause)}`, attempts, methodsLeft: [], cause })
            })
            yield* send((a) => a.publicKey(ctx.username, algorithm, blob, signature))
            last = outcome(yield* next)
            if (last._tag === "Success" || last.partialSuccess || !last.methods.includes("publickey")) return last
          }
        }
        return last
      })

    const attempt = (m: SshAuthMethod): Effect.Effect<Outcome, SshTransportError | SshAuthError> => {
      switch (m._tag) {
        case "None":
          return Effect.zipRight(send((a) => a.none(ctx.username)), Effect.map(next, outcome))
        case "Password":
          return Effect.gen(function* () {
            yield* send((a) => a.password(ctx.username, Redacted.value(m.password)))
            for (;;) {
              const answer = yield* next
              if (answer._tag !== "PasswordChangeRequest") return outcome(answer)
              if (!m.onPasswordChange) return { _tag: "Failure", methods: ["password"], partialSuccess: false } as Outcome
              const fresh = yield* m.onPasswordChange(answer.prompt)
              yield* send((a) => a.changePassword(ctx.username, Redacted.value(m.password), Redacted.value(fresh)))
            }
          })
        case "PrivateKey":
          return signedAttempt(m.key, m.certificate)
        case "Agent":
          if (typeof m.agent !== "string") return agentAttempt(m.agent)
          return Effect.acquireUseRelease(
            Effect.sync(() => ctx.openAgent(m.agent as string)),
            (agent) => agentAttempt(agent),
            (agent) => Effect.sync(() => agent.close())
          )
        case "KeyboardInteractive":
          return Effect.gen(function* () {
            yield* send((a) => a.keyboardInteractive(ctx.username))
            for (;;) {
              const answer = yield* next
              if (answer._tag !== "InfoRequest") return outcome(answer)
              const answers = answer.prompts.length === 0 ? [] : yield* m.respond(answer)
              yield* send((a) => a.infoResponse(answers))
            }
          })
        case "Hostbased":
          return Effect.gen(function* () {
            const algorithm = rsaAlgorithms(m.key.type)[0]!
            const blob = m.key.publicKey.blob
            const data = auth().hostbasedSignedData(ctx.username, algorithm, blob, m.hostname, m.localUsername)
            const signature = m.key.sign(algorithm, data)
            yield* send((a) => a.hostbased(ctx.username, algorithm, blob, m.hostname, m.localUsername, signature))
            return outcome(yield* next)
          })
      }
    }

    let state = yield* attempt({ _tag: "None" })
    if (state._tag === "Success") return
    let methodsLeft = state.methods
    const remaining = methods.filter((m) => m._tag !== "None")
    for (const m of remaining) {
      const name = methodName(m)
      if (!methodsLeft.includes(name)) {
        attempts.push({ method: name, result: "skipped", detail: `server accepts only ${methodsLeft.join(", ") || "nothing"}` })
        continue
      }
      state = yield* attempt(m)
      if (state._tag === "Success") return
      methodsLeft = state.methods
      attempts.push({
        method: name,
        result: state.partialSuccess ? "partial" : "rejected",
        detail: `server continues with: ${methodsLeft.join(", ") || "nothing"}`
      })
    }
    const tried = attempts.map((a) => `${a.method} (${a.result})`).join(", ")
    return yield* Effect.fail(
      new SshAuthError({
        reason: remaining.length === 0 ? "no-methods" : "all-methods-failed",
        message:
          remaining.length === 0
            ? `the server requires authentication (${methodsLeft.join(", ")}) and no method was configured`
            : `authentication failed for ${ctx.username}: tried ${tried}; the server accepts ${methodsLeft.join(", ") || "nothing more"}`,
        attempts,
        methodsLeft
      })
    )
  })
