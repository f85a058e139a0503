// Reads {"secret", "headers", "body"} as JSON on stdin and exits 0 when the
// official Standard Webhooks library accepts the request, 1 when it does not.
import { Webhook } from "standardwebhooks";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { secret, headers, body } = JSON.parse(input);
try {
  new Webhook(secret).verify(body, headers);
  process.exit(0);
} catch (e) {
  console.error(`refused: ${e.message}`);
  process.exit(1);
}
