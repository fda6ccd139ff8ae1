import { discoveryUrl } from '../../proxy/auth/key-source.js';
import type { MethodSpec } from './method-specs.js';

/** What an agent says about itself; the rest of the card is the same for every agent. */
export interface CardInput {
  readonly name: string;
  readonly description: string;
  /** Where clients send JSON-RPC: the sidecar's public `/message` URL, not the agent's loopback port. */
  readonly url: string;
  readonly methods: readonly MethodSpec[];
  /** The OIDC issuer whose tokens the sidecar accepts, advertised as the card's security scheme. */
  readonly issuer?: string | undefined;
}

/** A skill of the card: one JSON-RPC method with the params schema the policy enforces. */
export interface AgentSkill {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly tags: readonly string[];
  readonly inputModes: readonly string[];
  readonly outputModes: readonly string[];
  /** ca-a2a extension: the JSON Schema of the method's params (policies/schemas/). */
  readonly params_schema: Readonly<Record<string, unknown>>;
}

const PROTOCOL_VERSION = '0.3.0';
const AGENT_VERSION = '0.1.0';

/**
 * Builds the A2A agent card (served at /.well-known/agent-card.json and at the seed's /card).
 * The skills are the methods of the service policy, so the card never lists a method the
 * sidecar would refuse as unknown.
 */
export function buildAgentCard(input: CardInput): Record<string, unknown> {
  const skills: AgentSkill[] = input.methods.map((method) => ({
    id: method.name,
    name: method.name,
    description: method.description,
    tags: [input.name, 'json-rpc'],
    inputModes: ['application/json'],
    outputModes: ['application/json'],
    params_schema: method.params,
  }));
  const security = input.issuer === undefined ? {} : {
    securitySchemes: {
      oidc: { type: 'openIdConnect', openIdConnectUrl: discoveryUrl(input.issuer) },
    },
    security: [{ oidc: [] }],
  };
  return {
    protocolVersion: PROTOCOL_VERSION,
    name: input.name,
    description: input.description,
    url: input.url,
    preferredTransport: 'JSONRPC',
    version: AGENT_VERSION,
    capabilities: { streaming: false, pushNotifications: false, stateTransitionHistory: false },
    defaultInputModes: ['application/json'],
    defaultOutputModes: ['application/json'],
    ...security,
    skills,
  };
}
