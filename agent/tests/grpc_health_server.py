"""A real gRPC health server for the probe tests (grpcio-health-checking from PyPI).

Usage: grpc_health_server.py PORT
Services: "" and "svc-ok" are SERVING, "svc-down" is NOT_SERVING, "svc-slow" answers after 5 s.
"""
import sys
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


class SlowHealth(health.HealthServicer):
    def Check(self, request, context):
        if request.service == "svc-slow":
            time.sleep(5)
        return super().Check(request, context)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = SlowHealth()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("svc-ok", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("svc-slow", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("svc-down", health_pb2.HealthCheckResponse.NOT_SERVING)
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
