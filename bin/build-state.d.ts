/** Whether dist/ exists and no source it was built from is newer (bin/build-state.js). */
export function buildIsCurrent(root: URL): boolean;
