// A Lambda-style Node.js handler: async, event is the JSON-decoded request body, the resolved
// value is JSON-encoded into the response.
exports.handler = async (event, context) => {
  return { message: "hello from node", input: event };
};
