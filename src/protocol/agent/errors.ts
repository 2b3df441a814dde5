/**
 * Failures talking to an ssh-agent. "failure": the agent answered SSH_AGENT_FAILURE (unknown key,
 * refused, locked); "malformed": a message that does not decode; "frame-too-large": a length beyond
 * the limit; "unexpected-response": a well-formed answer that does not fit the request;
 * "unavailable": the agent could not be reached; "closed": the connection ended or was closed.
 */
export type AgentErrorReason = "failure" | "malformed" | "frame-too-large" | "unexpected-response" | "unavailable" | "closed"

export class AgentError extends Error {
  override readonly name = "AgentError"
  constructor(
    readonly reason: AgentErrorReason,
    message: string
  ) {
    super(message)
  }
}
