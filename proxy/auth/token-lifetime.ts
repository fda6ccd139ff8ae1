/**
 * The longest lifetime (`exp - iat`) of an access token any sidecar accepts, 24 h (the issuer's
 * are 300 s). Revocations are kept this long past the tokens they match were issued, then
 * dropped: authn refuses a token living longer, since it would be accepted again once the
 * revocation that refused it is gone. One value for the sidecars and every revoker (admin API,
 * `ca-a2a revoke`), which cannot know each sidecar's policy.
 */
export const MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600;
