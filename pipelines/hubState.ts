// The hub's whole state, derived from events by one reducer: membership (members, LAN routes,
// leases), the penalties of sources that failed to authenticate, and the replacement history of
// identities (cloned-identity detection). Admission (admission.ts) reads a snapshot and answers with
// the events to apply; nothing else changes the state.
import { AgedMap } from '../operators/core/agedMap.js';
import { reduceMembership, type Membership, type MembershipEvent } from './membership.js';
import { MAX_TRACKED, withCloneRefusal, withReplacement, type Replacements } from './replacements.js';

/** Source addresses remembered for failed authentications (oldest forgotten first). */
export const MAX_PENALTIES = 4096;
/** The first failure blocks a source for this long; each further failure doubles it up to the max. */
export const PENALTY_BASE_MS = 1000;
export const PENALTY_MAX_MS = 60_000;

/** A source address that failed to authenticate: how often, and until when it is refused. */
export interface Penalty {
  readonly failures: number;
  readonly until: number;
}

/** The hub's state. Treat as immutable: reduceHub returns a new one when anything changed. */
export interface HubState {
  readonly membership: Membership;
  /** Source host → penalty, oldest first; at most MAX_PENALTIES (a persistent map: an update copies O(log n)). */
  readonly penalties: AgedMap<string, Penalty>;
  readonly replacements: Replacements;
}

/** What changes the hub's state. */
export type HubEvent =
  | MembershipEvent
  /** A source failed to authenticate at `now`: it is blocked for a doubling time. */
  | { readonly type: 'auth-failed'; readonly host: string; readonly now: number }
  /** A source authenticated: its penalty is forgotten. */
  | { readonly type: 'auth-passed'; readonly host: string }
  /** An identity's live session was replaced by a newer one at `now`. */
  | { readonly type: 'replaced-live'; readonly identity: string; readonly now: number }
  /** A newcomer of an identity was refused as a clone at `now`. */
  | { readonly type: 'clone-refused'; readonly identity: string; readonly now: number };

/** The state a hub starts with. */
export function initialHubState(membership: Membership): HubState {
  return { membership, penalties: AgedMap.empty(MAX_PENALTIES), replacements: AgedMap.empty(MAX_TRACKED) };
}

/** The state after `event`; `s` itself is never changed. */
export function reduceHub(s: HubState, event: HubEvent): HubState {
  switch (event.type) {
    case 'joined':
    case 'left': {
      const membership = reduceMembership(s.membership, event);
      return membership === s.membership ? s : { ...s, membership };
    }
    case 'auth-failed': {
      const failures = (s.penalties.get(event.host)?.failures ?? 0) + 1;
      // The host becomes the youngest entry; a full table forgets its oldest.
      const penalties = s.penalties.set(event.host, { failures, until: event.now + Math.min(PENALTY_MAX_MS, PENALTY_BASE_MS * 2 ** (failures - 1)) });
      return { ...s, penalties };
    }
    case 'auth-passed': {
      const penalties = s.penalties.delete(event.host);
      return penalties === s.penalties ? s : { ...s, penalties };
    }
    case 'replaced-live':
      return { ...s, replacements: withReplacement(s.replacements, event.identity, event.now) };
    case 'clone-refused':
      return { ...s, replacements: withCloneRefusal(s.replacements, event.identity, event.now) };
  }
}
