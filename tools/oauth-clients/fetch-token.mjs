// Fetches a token from keygate's password grant with the real simple-oauth2
// client, configured as its users do: client "anonymous" with an empty
// secret (a public client). Used by e2e/TestTokenClientSimpleOAuth2.
//
//   node fetch-token.mjs <tokenHost> <mode> <username>   (password on stdin)
//
// mode: header-strict | header-loose | body-form | body-json
// Prints the token response as JSON on success; exits 1 with the error.
import { ResourceOwnerPassword } from 'simple-oauth2';
import { readFileSync } from 'node:fs';

const [tokenHost, mode, username] = process.argv.slice(2);
const password = readFileSync(0, 'utf8').replace(/\n$/, '');
const modes = {
  'header-strict': { options: { authorizationMethod: 'header', credentialsEncodingMode: 'strict' } },
  'header-loose': { options: { authorizationMethod: 'header', credentialsEncodingMode: 'loose' } },
  'body-form': { options: { authorizationMethod: 'body', bodyFormat: 'form' } },
  'body-json': { options: { authorizationMethod: 'body', bodyFormat: 'json' } },
};
if (!modes[mode]) {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
const client = new ResourceOwnerPassword({
  client: { id: 'anonymous', secret: '' },
  auth: { tokenHost, tokenPath: '/oauth/token' },
  ...modes[mode],
});
try {
  const token = await client.getToken({ username, password });
  console.log(JSON.stringify(token.token));
} catch (err) {
  console.error(`${err.message} ${err.data ? JSON.stringify(err.data.payload) : ''}`);
  process.exit(1);
}
