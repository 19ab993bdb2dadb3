// Package secrets encrypts the gateway's secrets at rest: Meta app secrets
// and tenants' Standard Webhooks signing secrets.
//
// A Keyring holds the current SECRET_KEY and, during a key rotation,
// SECRET_KEY_PREVIOUS. Seal always uses the current key; Open finds the key
// by the id written in the ciphertext, so rows sealed under the previous key
// still open until `gateway rekey` re-seals them. Every ciphertext is bound
// to its row by associated data (for example "apps.secret:<app_id>"): a
// ciphertext copied into another row does not open.
//
// Invariants: plaintexts never leave this package in an error message, and
// the package never logs.
package secrets
