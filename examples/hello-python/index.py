# A Lambda-style Python handler: event is the JSON-decoded request body, the return value is
# JSON-encoded into the response.


def handler(event, context):
    return {"message": "hello from python", "input": event}
