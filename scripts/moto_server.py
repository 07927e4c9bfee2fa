"""moto server for hubrelay's tests, with DynamoDB requests served one at a time.

moto evaluates a ConditionExpression and then writes the item as two steps under its threaded server, so two
concurrent conditional PutItems on one key can both succeed (seen here: "two winners" once in a full run).
DynamoDB never allows that, and our idempotency tests assert exactly that guarantee, so DynamoDB calls take
a lock; everything else (SQS long polls) stays concurrent. Usage: moto_server.py -H HOST -p PORT
"""
import argparse
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

parser = argparse.ArgumentParser()
parser.add_argument("-H", "--host", default="127.0.0.1")
parser.add_argument("-p", "--port", type=int, default=5000)
args = parser.parse_args()

app = DomainDispatcherApplication(create_backend_app)
dynamodb_lock = threading.Lock()


def serial_dynamodb(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
        with dynamodb_lock:
            return list(app(environ, start_response))
    return app(environ, start_response)


run_simple(args.host, args.port, serial_dynamodb, threaded=True, request_handler=MotoRequestHandler)
