// WorkerService: the moed.worker.v1.Worker gRPC service (callback API) around one StageWorker,
// and the step channel (proto/step_channel.h) that Load opens. Handlers only translate messages:
// every call except Health is posted to one step thread, which owns the StageWorker, so RPCs
// never block gRPC's threads and never run concurrently with a step; the same thread serves the
// step channel, so a step from the router runs without a thread hand-off. Health is answered on
// gRPC's thread from atomics, so it stays responsive during a long step. Step errors travel
// inside StepResponse; the unary RPCs map absl::Status to gRPC status codes one to one.
//
// Load and Shutdown first interrupt a step in progress (StageWorker::Interrupt): they come when
// the router tears the pipeline down, and a stage waiting for a dead neighbour must not hold them.
//
// Thread-safe. `on_shutdown` runs on a gRPC thread once the Shutdown RPC is complete.
#ifndef MOED_WORKERS_WORKER_SERVICE_H_
#define MOED_WORKERS_WORKER_SERVICE_H_

#include <functional>
#include <memory>

#include "moed/worker/v1/worker.grpc.pb.h"
#include "workers/stage_worker.h"

namespace moed::worker {

class StepThread;

class WorkerService final : public v1::Worker::CallbackService {
 public:
  WorkerService(StageWorker* worker, std::function<void()> on_shutdown);
  // Runs what was posted, then stops the step thread. Call after the server has shut down.
  ~WorkerService() override;

  grpc::ServerUnaryReactor* Load(grpc::CallbackServerContext* context,
                                 const v1::LoadRequest* request,
                                 v1::LoadResponse* response) override;
  grpc::ServerUnaryReactor* Health(grpc::CallbackServerContext* context,
                                   const v1::HealthRequest* request,
                                   v1::HealthResponse* response) override;
  grpc::ServerBidiReactor<v1::StepRequest, v1::StepResponse>* Step(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* StepOnce(grpc::CallbackServerContext* context,
                                     const v1::StepRequest* request,
                                     v1::StepResponse* response) override;
  grpc::ServerUnaryReactor* OpenSlot(grpc::CallbackServerContext* context,
                                     const v1::OpenSlotRequest* request,
                                     v1::OpenSlotResponse* response) override;
  grpc::ServerUnaryReactor* CloseSlot(grpc::CallbackServerContext* context,
                                      const v1::CloseSlotRequest* request,
                                      v1::CloseSlotResponse* response) override;
  grpc::ServerUnaryReactor* Snapshot(grpc::CallbackServerContext* context,
                                     const v1::SnapshotRequest* request,
                                     v1::SnapshotResponse* response) override;
  grpc::ServerUnaryReactor* Restore(grpc::CallbackServerContext* context,
                                    const v1::RestoreRequest* request,
                                    v1::RestoreResponse* response) override;
  grpc::ServerUnaryReactor* Drop(grpc::CallbackServerContext* context,
                                 const v1::DropRequest* request,
                                 v1::DropResponse* response) override;
  grpc::ServerUnaryReactor* Shutdown(grpc::CallbackServerContext* context,
                                     const v1::ShutdownRequest* request,
                                     v1::ShutdownResponse* response) override;

  // Runs one step on the step thread's behalf (the stream reactor's entry point).
  void RunStep(const v1::StepRequest& request, v1::StepResponse* response);
  // Queues `work` for the step thread.
  void Post(std::function<void()> work);

 private:
  // Posts `work` (returning the call's status) and finishes the unary call with it.
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context,
                                  std::function<absl::Status()> work);

  StageWorker* worker_;
  std::function<void()> on_shutdown_;
  std::unique_ptr<StepThread> step_thread_;
};

}  // namespace moed::worker

#endif  // MOED_WORKERS_WORKER_SERVICE_H_
