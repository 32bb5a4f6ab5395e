"""A Python caller of the API, built only from stubs generated from proto/ (protoc's python plugin).

Usage: client.py GEN_DIR HOST:PORT API_KEY ORG_ID ORIGIN_ID
Talks gRPC (grpcio, HTTP/2) and Connect JSON (urllib, HTTP/1.1) and prints one JSON object with
what it saw, for the test to check.
"""
import json
import sys
import urllib.error
import urllib.request

gen_dir, address, api_key, org_id, origin_id = sys.argv[1:6]
sys.path.insert(0, gen_dir)

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from rendition.v1 import common_pb2, job_pb2  # noqa: E402

metadata = [("authorization", f"Bearer {api_key}"), ("x-organization-id", org_id)]
channel = grpc.insecure_channel(address)


def rpc(method, request_type, response_type, streaming=False):
    factory = channel.unary_stream if streaming else channel.unary_unary
    return factory(
        f"/rendition.v1.JobService/{method}",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )


create = rpc("Create", job_pb2.JobServiceCreateRequest, job_pb2.JobServiceCreateResponse)
cancel = rpc("Cancel", job_pb2.JobServiceCancelRequest, job_pb2.JobServiceCancelResponse)
watch = rpc("Watch", job_pb2.JobServiceWatchRequest, job_pb2.JobServiceWatchResponse, streaming=True)

request = job_pb2.JobServiceCreateRequest(input_origin_id=origin_id, input_path="in.mp4", output_origin_id=origin_id)
request.outputs.add(type=common_pb2.OUTPUT_TYPE_MP4).video.add(
    codec=common_pb2.VIDEO_CODEC_H264, resolution=common_pb2.RESOLUTION_720P
)
request.metadata["caller"] = "python"
job = create(request, metadata=metadata, timeout=10).job

events = []
for message in watch(job_pb2.JobServiceWatchRequest(id=job.id), metadata=metadata, timeout=10):
    events.append([job_pb2.WatchEvent.Name(message.event), common_pb2.JobStatus.Name(message.job.status)])
    if message.event == job_pb2.WATCH_EVENT_SNAPSHOT:
        cancel(job_pb2.JobServiceCancelRequest(id=job.id), metadata=metadata, timeout=10)

bad = job_pb2.JobServiceCreateRequest(output_origin_id=origin_id)
bad.outputs.add(type=common_pb2.OUTPUT_TYPE_MP4).video.add(width=10)
try:
    create(bad, metadata=metadata, timeout=10)
    invalid = None
except grpc.RpcError as err:
    invalid = {"code": err.code().name, "details": err.details()}

try:
    create(request, metadata=[("authorization", "Bearer nope"), ("x-organization-id", org_id)], timeout=10)
    unauthenticated = None
except grpc.RpcError as err:
    unauthenticated = err.code().name

# The same generated message as Connect JSON over plain HTTP.
http_request = urllib.request.Request(
    f"http://{address}/rendition.v1.JobService/Get",
    data=json_format.MessageToJson(job_pb2.JobServiceGetRequest(id=job.id)).encode(),
    headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}", "X-Organization-ID": org_id},
)
with urllib.request.urlopen(http_request, timeout=10) as response:
    fetched = json_format.Parse(response.read(), job_pb2.JobServiceGetResponse()).job

print(json.dumps({
    "job_id": job.id,
    "created_status": common_pb2.JobStatus.Name(job.status),
    "metadata": dict(job.metadata),
    "output_path": job.outputs[0].path,
    "events": events,
    "invalid": invalid,
    "unauthenticated": unauthenticated,
    "json_get": {"id": fetched.id, "status": common_pb2.JobStatus.Name(fetched.status)},
}))
