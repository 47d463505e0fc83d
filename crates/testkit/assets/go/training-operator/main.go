// Command training-operator runs the Kubeflow training-operator's own controllers and
// admission webhooks (github.com/kubeflow/training-operator, pinned in go.mod) for
// rlaunch's test clusters. It is upstream's cmd/training-operator.v1/main.go minus the
// certificate rotator, which cannot be turned off there and needs an in-cluster Service
// name, a Secret and a fixed /tmp directory: here the webhook server listens on
// 127.0.0.1 with the certificate in -webhook-cert-dir (testkit's PKI), and testkit
// installs the webhook configuration by URL. Everything a job sees (reconcilers, status
// conditions, validation) is the operator's code.
package main

import (
	"flag"
	"os"

	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	kubeflowv1 "github.com/kubeflow/training-operator/pkg/apis/kubeflow.org/v1"
	"github.com/kubeflow/training-operator/pkg/config"
	controllerv1 "github.com/kubeflow/training-operator/pkg/controller.v1"
	"github.com/kubeflow/training-operator/pkg/controller.v1/common"
	"github.com/kubeflow/training-operator/pkg/webhooks"
)

var (
	scheme   = runtime.NewScheme()
	setupLog = ctrl.Log.WithName("setup")
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(kubeflowv1.AddToScheme(scheme))
}

func main() {
	var probeAddr, certDir string
	var webhookPort, controllerThreads int
	var enabledSchemes controllerv1.EnabledSchemes
	flag.StringVar(&probeAddr, "health-probe-bind-address", "127.0.0.1:8081", "The address the probe endpoint binds to.")
	flag.IntVar(&webhookPort, "webhook-server-port", 9443, "Loopback port of the webhook server.")
	flag.StringVar(&certDir, "webhook-cert-dir", "", "Directory holding tls.crt and tls.key of the webhook server.")
	flag.Var(&enabledSchemes, "enable-scheme", "Enable scheme(s) as --enable-scheme=pytorchjob, case insensitive.")
	flag.IntVar(&controllerThreads, "controller-threads", 1, "Number of worker threads used by the controller.")
	config.Config.PyTorchInitContainerImage = config.PyTorchInitContainerImageDefault
	config.Config.PyTorchInitContainerTemplateFile = config.PyTorchInitContainerTemplateFileDefault
	config.Config.PyTorchInitContainerMaxTries = config.PyTorchInitContainerMaxTriesDefault
	config.Config.MPIKubectlDeliveryImage = config.MPIKubectlDeliveryImageDefault
	opts := zap.Options{Development: true, StacktraceLevel: zapcore.DPanicLevel}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		WebhookServer:          webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: webhookPort, CertDir: certDir}),
		HealthProbeBindAddress: probeAddr,
	})
	if err != nil {
		setupLog.Error(err, "unable to start manager")
		os.Exit(1)
	}
	if enabledSchemes.Empty() {
		enabledSchemes.FillAll()
	}
	gangSchedulingSetupFunc := common.GenNonGangSchedulerSetupFunc()
	for _, s := range enabledSchemes {
		setupReconciler, ok := controllerv1.SupportedSchemeReconciler[s]
		setupWebhook, okWebhook := webhooks.SupportedSchemeWebhook[s]
		if !ok || !okWebhook {
			setupLog.Info("scheme is not supported", "scheme", s)
			os.Exit(1)
		}
		if err := setupReconciler(mgr, gangSchedulingSetupFunc, controllerThreads); err != nil {
			setupLog.Error(err, "unable to create controller", "scheme", s)
			os.Exit(1)
		}
		if err := setupWebhook(mgr); err != nil {
			setupLog.Error(err, "unable to set up webhook", "scheme", s)
			os.Exit(1)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", mgr.GetWebhookServer().StartedChecker()); err != nil {
		setupLog.Error(err, "unable to set up ready check")
		os.Exit(1)
	}
	setupLog.Info("starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "problem running manager")
		os.Exit(1)
	}
}
