// The whole bot in one resource group: Function App (Flex Consumption, Linux, Python 3.11),
// storage (host storage, the queues, the transcript table), Application Insights, Cosmos DB
// (serverless), Key Vault and the Azure Bot with its Direct Line channel; optionally a VNet with
// private endpoints (privateNetworking). Three ways to deploy it, all
// described in docs/deploy.md:
//
//   azd up                              (azure.yaml; main.parameters.json maps azd's environment)
//   az deployment group create -g <group> --template-file infra/main.bicep \
//     --parameters appName=<globally-unique-name>
//   func azure functionapp publish <appName> --python
//   .github/workflows/deploy.yml        (manual; OIDC login, az bicep build, deploy, publish)
//
// Hosting plan: Flex Consumption (FC1), not Consumption (Y1).
//   * Linux Consumption gets no new features or language versions and retires on
//     2028-09-30; Flex Consumption is Microsoft's serverless plan for new Linux apps.
//   * functionTimeout: host.json asks for 00:10:00, the Consumption maximum. An operation
//     runs up to OperationTimeoutSeconds (600 s by default) inside the queue-triggered
//     worker, so on Consumption it would sit exactly at the hard ceiling; Flex defaults to
//     30 minutes and allows more, so host.json can give the worker head room.
//   * Cold start: the Bot Service waits about 15 s for /api/messages. Flex can keep
//     instances of the HTTP group warm (alwaysReadyHttpInstances; 0 = pay per use only).
//   * VNet integration and private endpoints are available on Flex (not on Linux Consumption):
//     privateNetworking=true closes storage and Cosmos DB to the internet.
//   * Managed identity: Flex reads its deployment package through the app's identity (no
//     storage key in WEBSITE_RUN_FROM_PACKAGE) and supports identity-based host storage.
//   * `func azure functionapp publish <app> --python` works with Flex (current Core Tools v4
//     detect the plan and publish with a remote build from requirements.txt).
//   Limits to know: Flex is offered in a subset of regions
//   (`az functionapp list-flexconsumption-locations`), and FUNCTIONS_WORKER_RUNTIME /
//   FUNCTIONS_EXTENSION_VERSION are not app settings there: the runtime is
//   functionAppConfig.runtime below.
//
// Identities, secrets and the security baseline (tests/deploy/test_security_baseline.py checks the
// template against the PSRule for Azure rules named there; docs/deploy.md walks a deployment):
//   * Bot identity: MicrosoftAppType=UserAssignedMSI with a user-assigned managed identity
//     (no password to create, store or rotate). The identity is attached to the Function App
//     and registered on the Azure Bot (msaAppMSIResourceId).
//   * Every data-plane call the app and its host make uses the Function App's system-assigned
//     identity; no shared key exists anywhere. The storage account refuses shared keys
//     (allowSharedKeyAccess: false), host storage is identity-based (AzureWebJobsStorage__*), and
//     the app's own queue and table clients take the same settings (services/settings.py,
//     StorageConnection). Roles are scoped to what each part touches (see "Roles" below).
//   * Cosmos DB: local (key) authentication off; the identity holds the data-plane role
//     "Cosmos DB Built-in Data Contributor" on the bot's database only. The database and its
//     containers are created HERE: data-plane RBAC cannot create them.
//   * Secrets live in Key Vault (RBAC authorisation, soft delete, purge protection): the two
//     Direct Line site keys (read from the channel at deployment), OperationSigningKey and
//     HandoffSigningKey. App settings hold Key Vault references without a version, which the
//     platform resolves with the system-assigned identity (Key Vault Secrets User on this vault
//     only) and follows to a secret's newest version (rotation: docs/deploy.md).
//   * Direct Line: two sites, uploads blocked on both. "worker" is the worker's server-side key
//     (DirectLineSecret); "clients" is for browser clients through the app's token endpoint
//     (DirectLineClientSecret), with enhanced authentication and the trusted origins of
//     directLineTrustedOrigins. A key can be regenerated without touching the other site.
//   * Audit and recovery: diagnostic settings send the Function App's, the storage services',
//     Cosmos DB's, Key Vault's and the Bot Service's logs to the Log Analytics workspace; blob and
//     container soft delete; Cosmos DB continuous backup; FTP and SCM basic-authentication
//     publishing credentials off (publishing uses Entra ID).
//   * Network: privateNetworking=true integrates the app with a VNet and reaches storage and
//     Cosmos DB through private endpoints only (public access off, firewalls deny). The default
//     (false) keeps both reachable from the internet, since a Flex Consumption app without VNet
//     integration has no fixed addresses a firewall could allow; every request still needs an
//     Entra ID token (no keys), TLS 1.2 and HTTPS. docs/deploy.md, "Network".
//   * OperationSigningKey / HandoffSigningKey: @secure() parameters whose default is newGuid(),
//     so a deployment that does not pass them generates fresh keys. Pass them to keep them.
//   * Application Insights: local (instrumentation key) authentication is off; the host sends
//     telemetry with the system-assigned identity (Monitoring Metrics Publisher on the component).

targetScope = 'resourceGroup'

@description('azd environment name (AZURE_ENV_NAME), kept in the azd-env-name tag. Empty: no tag.')
param environmentName string = ''

@description('Region for every resource except the Azure Bot (always global). Must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Function App name: globally unique, becomes <appName>.azurewebsites.net. Also names the Azure Bot.')
@minLength(2)
@maxLength(43)
param appName string = 'bot-${uniqueString(resourceGroup().id)}'

@description('Display name shown by the Azure Bot.')
param botDisplayName string = appName

@description('Azure Bot pricing tier: F0 (free, standard channels limited in messages) or S1.')
@allowed([
  'F0'
  'S1'
])
param botSku string = 'F0'

@description('Flex Consumption instance memory, MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption scale-out limit.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances for the HTTP group (messages). 0: none, billed per use only; 1 avoids most cold starts at a fixed cost.')
@minValue(0)
param alwaysReadyHttpInstances int = 0

@description('Seconds of inactivity after which a conversation expires (ExpireAfterSeconds).')
@minValue(1)
param expireAfterSeconds int = 1800

@description('Cosmos DB defaultTtl of the conversation state container, seconds (CosmosDbTimeToLive).')
@minValue(1)
param cosmosTimeToLiveSeconds int = 86400

@description('Seconds an operation may run before it is reported as timed out (OperationTimeoutSeconds).')
@minValue(1)
param operationTimeoutSeconds int = 600

@description('Name of the operations queue; its poison queue is <name>-poison.')
param operationsQueueName string = 'long-operations'

@description('Cosmos DB database id.')
param cosmosDatabaseName string = 'bot-db'

@description('Cosmos DB container for conversation state (has a default TTL).')
param conversationContainerName string = 'conversation-state'

@description('Cosmos DB container for user state (no TTL).')
param userContainerName string = 'user-state'

@description('Direct Line REST endpoint the worker posts results to. Use the regional one (e.g. Europe) if the bot is regional.')
param directLineEndpoint string = 'https://directline.botframework.com/v3/directline'

@description('NCRONTAB (six fields, seconds first, UTC) of the expiry sweeper (SweepSchedule).')
param sweepSchedule string = '0 */1 * * * *'

@description('Whether the sweeper tells a user that their conversation expired (ExpiryNoticeEnabled).')
param expiryNoticeEnabled bool = true

@description('Text of the expiry notice; {duration} (e.g. 5 min, 90 s) or {minutes} is filled in (ExpiryNoticeText).')
param expiryNoticeText string = 'This conversation was closed after {duration} without activity. Send anything to start again.'

@description('Whether every message in and out of a conversation is recorded in Azure Table storage (TranscriptsEnabled).')
param transcriptsEnabled bool = true

@description('Azure Table (in the app\'s storage account) holding the transcripts (TranscriptTableName).')
param transcriptTableName string = 'transcripts'

@description('Days a transcript is kept; an hourly timer deletes older entries (TranscriptRetentionDays).')
@minValue(1)
param transcriptRetentionDays int = 30

@description('Whether the user\'s own text is replaced by [redacted] in transcripts (TranscriptRedactUserText).')
param transcriptRedactUserText bool = false

@description('Seconds a handoff to a person may wait to be accepted before it is failed back to the user (HandoffTimeoutSeconds).')
@minValue(1)
param handoffTimeoutSeconds int = 300

@description('Messages in a row the bot does not understand before it hands the user to a person; 0: never (HandoffAfterMisunderstandings).')
@minValue(0)
param handoffAfterMisunderstandings int = 3

@description('Cosmos DB container for each user\'s latest conversation reference and notification topics (CosmosDbReferenceContainerId).')
param referenceContainerName string = 'conversation-references'

@description('Queue of notifications from outside events (ExternalEventsQueueName); its poison queue is <name>-poison.')
param externalEventsQueueName string = 'external-events'

@description('Proactive notifications sent per second by each instance (NotificationsPerSecond).')
param notificationsPerSecond string = '10'

@description('Operations one user may have running at once, across their conversations; 0: no limit (MaxRunningOperationsPerUser).')
@minValue(0)
param maxRunningOperationsPerUser int = 3

@description('Operations one user may start per hour; 0: no limit (OperationStartsPerUserPerHour).')
@minValue(0)
param operationStartsPerUserPerHour int = 20

@description('HMAC key the worker signs operation results with. Default: a new random GUID on every deployment. Pass your own (at least 32 characters) to keep it stable.')
@secure()
@minLength(32)
param operationSigningKey string = newGuid()

@description('Origins of the web pages that call /api/directline/token (Web Chat), e.g. https://www.example.com: the Function App\'s CORS origins, and by default the Direct Line "clients" site\'s trusted origins. Empty: no browser page may call the app.')
param webChatOrigins array = []

@description('HMAC key the agent hub signs its handoff.status events with (HandoffSigningKey, kept in Key Vault; the hub holds the same key). Default: a new random GUID on every deployment. Pass your own (at least 32 characters) to keep it stable.')
@secure()
@minLength(32)
param handoffSigningKey string = newGuid()

@description('Origins (scheme://host[:port]) of the web pages allowed to use Direct Line tokens from the "clients" site (enhanced authentication). Empty: no page is trusted until you add one.')
param directLineTrustedOrigins array = webChatOrigins

@description('true: VNet integration for the app, private endpoints for storage and Cosmos DB, their public access off. false (default): both stay reachable from the internet with Entra ID only (see docs/deploy.md, "Network").')
param privateNetworking bool = false

@description('Address space of the VNet created when privateNetworking is true; the app and private endpoint subnets are its first two /24s.')
param virtualNetworkAddressPrefix string = '10.80.0.0/16'

@description('Log Analytics retention, days.')
@minValue(30)
param logRetentionDays int = 30

var resourceToken = toLower(uniqueString(resourceGroup().id, appName))
var storageAccountName = 'st${resourceToken}'
var cosmosAccountName = 'cosmos-${resourceToken}'
// Key Vault names are global and 3-24 characters; a deleted vault keeps its name for the
// soft-delete retention (purge protection forbids purging it earlier): docs/deploy.md.
var keyVaultName = 'kv-${resourceToken}'
var deploymentContainerName = 'app-package-${take(toLower(appName), 40)}'
var pythonVersion = '3.11'
var messagesRoute = 'api/messages'
var alwaysReadyHttp = [
  {
    name: 'http'
    instanceCount: alwaysReadyHttpInstances
  }
]

// azd finds its environment's resources by azd-env-name and the Function App by azd-service-name
// (the service's name in azure.yaml).
var tags = empty(environmentName) ? {} : { 'azd-env-name': environmentName }
var azdServiceName = 'bot'

// Built-in role ids (Azure RBAC and Cosmos DB data plane), each named as in the built-in roles list.
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'
var cosmosDataContributorRoleId = '00000000-0000-0000-0000-000000000002'

// Direct Line sites: the worker's own key, and one for browser clients (token endpoint).
var workerSiteName = 'worker'
var clientsSiteName = 'clients'

// Private networking (privateNetworking=true): the app's outbound traffic enters the VNet through a
// subnet delegated to Flex Consumption; storage and Cosmos DB answer on private endpoints only.
var virtualNetworkName = 'vnet-${appName}'
var appSubnetName = 'app'
var privateEndpointSubnetName = 'private-endpoints'
var appSubnetId = resourceId('Microsoft.Network/virtualNetworks/subnets', virtualNetworkName, appSubnetName)
var privateEndpointSubnetId = resourceId(
  'Microsoft.Network/virtualNetworks/subnets',
  virtualNetworkName,
  privateEndpointSubnetName
)
var publicNetworkAccess = privateNetworking ? 'Disabled' : 'Enabled'

// Logs of every resource that has them go to the workspace (audit and investigation).
var allLogs = [
  {
    categoryGroup: 'allLogs'
    enabled: true
  }
]

// API versions are ones whose schemas the pinned azure-mgmt-* SDKs publish, so the offline check
// (tests/deploy/arm_schema.py) can hold every property against them.
resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2025-07-01' = {
  name: 'log-${appName}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${appName}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // Entra ID only: telemetry without a token is refused (the host uses the app's identity).
    DisableLocalAuth: true
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Entra ID only: no account key or SAS works, so none can leak. The host, the deployment
    // package and the app's clients all use the app's identity.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: publicNetworkAccess
    // Deny unless the request comes through a private endpoint (privateNetworking). Without
    // private networking the account must accept the app's changing outbound addresses.
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }

  resource blobServices 'blobServices' = {
    name: 'default'
    properties: {
      // A deleted package, timer status or lock blob, or a whole container, can be restored.
      deleteRetentionPolicy: {
        enabled: true
        days: 7
      }
      containerDeleteRetentionPolicy: {
        enabled: true
        days: 7
      }
    }

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

  resource queueServices 'queueServices' = {
    name: 'default'

    resource operationsQueue 'queues' = {
      name: operationsQueueName
    }

    // The host moves a message here after host.json's maxDequeueCount failed attempts.
    resource operationsPoisonQueue 'queues' = {
      name: '${operationsQueueName}-poison'
    }

    resource externalEventsQueue 'queues' = {
      name: externalEventsQueueName
    }

    resource externalEventsPoisonQueue 'queues' = {
      name: '${externalEventsQueueName}-poison'
    }
  }

  resource tableServices 'tableServices' = {
    name: 'default'

    resource transcriptTable 'tables' = {
      name: transcriptTableName
    }
  }
}

resource botIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${appName}-bot'
  location: location
  tags: tags
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${appName}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(tags, { 'azd-service-name': azdServiceName })
  kind: 'functionapp,linux'
  identity: {
    // System-assigned: every data-plane call (storage, Cosmos DB, Key Vault references, telemetry;
    // DefaultAzureCredential picks it without a client id). User-assigned: the bot's own identity.
    type: 'SystemAssigned, UserAssigned'
    userAssignedIdentities: {
      '${botIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references are resolved with the system-assigned identity (the one holding
    // keyVaultSecretsRole); named here so that adding identities never changes it.
    keyVaultReferenceIdentity: 'SystemAssigned'
    // Outbound traffic through the VNet (private endpoints) when privateNetworking is on.
    virtualNetworkSubnetId: privateNetworking ? appSubnetId : null
    siteConfig: {
      minTlsVersion: '1.2'
      // The Web Chat pages that may call /api/directline/token (the platform answers CORS preflights).
      cors: {
        allowedOrigins: webChatOrigins
      }
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReadyHttpInstances > 0 ? alwaysReadyHttp : []
      }
      // Takes the place of FUNCTIONS_WORKER_RUNTIME=python on Flex Consumption.
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
  dependsOn: [
    virtualNetwork
  ]
}

// Basic-authentication publishing (FTP and the SCM site's user/password) off: publishing
// (`func azure functionapp publish`, azd, the workflow) signs in with Entra ID instead.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// ------------------------------------------------------------------------------------- Roles
// Each grant names the exact built-in role and the narrowest scope that works.
//
// Host storage (AzureWebJobsStorage__*, identity-based): the Functions docs ("Connecting to host
// storage with an identity", learn.microsoft.com/azure/azure-functions/functions-reference)
// require Storage Blob Data Owner on the account: the host creates and leases its own containers
// (locks, timer status, keys) and reads the deployment package container, so the account is its
// narrowest scope.
resource hostStorageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Queues, each on its own queue. The Functions docs' queue binding table (Azure Queue storage
// trigger and bindings, "identity-based connections") lists Storage Queue Data Reader + Storage
// Queue Data Message Processor for a trigger and Storage Queue Data Contributor + Storage Queue
// Data Message Sender for sending. Storage Queue Data Contributor holds all four, and also what
// the app's own client needs besides: creating the queue if missing and reading its properties
// (the health probe). The host triggers on the two main queues and moves failed messages to the
// poison queues; the app sends to all four (services/queues/storage_queue.py).
resource operationsQueueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::queueServices::operationsQueue.id, functionApp.id, storageQueueDataContributorRoleId)
  scope: storage::queueServices::operationsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource operationsPoisonQueueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::queueServices::operationsPoisonQueue.id, functionApp.id, storageQueueDataContributorRoleId)
  scope: storage::queueServices::operationsPoisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource externalEventsQueueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::queueServices::externalEventsQueue.id, functionApp.id, storageQueueDataContributorRoleId)
  scope: storage::queueServices::externalEventsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource externalEventsPoisonQueueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::queueServices::externalEventsPoisonQueue.id, functionApp.id, storageQueueDataContributorRoleId)
  scope: storage::queueServices::externalEventsPoisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Transcripts: Storage Table Data Contributor on the transcript table only.
resource transcriptTableRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::tableServices::transcriptTable.id, functionApp.id, storageTableDataContributorRoleId)
  scope: storage::tableServices::transcriptTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The host's telemetry (Application Insights has local authentication off).
resource monitoringRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionApp.id, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault references: Key Vault Secrets User (read secret values) on this vault only.
resource keyVaultSecretsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionApp.id, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: cosmosAccountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    // Entra ID only: the app uses its managed identity (CosmosDbAuthKey is empty), and account
    // keys cannot change databases or containers either (they are this template's).
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    // Point-in-time restore of the last 7 days (conversation state, references, user state).
    backupPolicy: {
      type: 'Continuous'
      continuousModeProperties: {
        tier: 'Continuous7Days'
      }
    }
    // Private endpoint only when privateNetworking is on (see storage's networkAcls).
    publicNetworkAccess: publicNetworkAccess
  }

  resource database 'sqlDatabases' = {
    name: cosmosDatabaseName
    properties: {
      resource: {
        id: cosmosDatabaseName
      }
    }

    resource conversationContainer 'containers' = {
      name: conversationContainerName
      properties: {
        resource: {
          id: conversationContainerName
          partitionKey: {
            paths: [
              '/id'
            ]
            kind: 'Hash'
          }
          defaultTtl: cosmosTimeToLiveSeconds
          // As services/state/cosmos.py CONVERSATION_INDEXING_POLICY: only what the sweeper filters on.
          indexingPolicy: {
            indexingMode: 'consistent'
            includedPaths: [
              {
                path: '/sweepAt/?'
              }
            ]
            excludedPaths: [
              {
                path: '/*'
              }
            ]
          }
        }
      }
    }

    resource userContainer 'containers' = {
      name: userContainerName
      properties: {
        resource: {
          id: userContainerName
          partitionKey: {
            paths: [
              '/id'
            ]
            kind: 'Hash'
          }
          // No defaultTtl: user state does not expire. As USER_INDEXING_POLICY: nothing indexed.
          indexingPolicy: {
            indexingMode: 'consistent'
            includedPaths: []
            excludedPaths: [
              {
                path: '/*'
              }
            ]
          }
        }
      }
    }

    resource referenceContainer 'containers' = {
      name: referenceContainerName
      properties: {
        resource: {
          id: referenceContainerName
          partitionKey: {
            paths: [
              '/id'
            ]
            kind: 'Hash'
          }
          // -1: only documents carrying their own ttl expire (a conversation's reference does; a
          // user's subscriptions do not). As REFERENCE_INDEXING_POLICY: only the topics are indexed.
          defaultTtl: -1
          indexingPolicy: {
            indexingMode: 'consistent'
            includedPaths: [
              {
                path: '/topics/[]/?'
              }
            ]
            excludedPaths: [
              {
                path: '/*'
              }
            ]
          }
        }
      }
    }
  }
}

// Cosmos DB Built-in Data Contributor on the bot's database only (not the whole account).
resource cosmosDataRole 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: cosmos
  name: guid(cosmos::database.id, functionApp.id, cosmosDataContributorRoleId)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
    principalId: functionApp.identity.principalId
    scope: '${cosmos.id}/dbs/${cosmosDatabaseName}'
  }
}

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: appName
  location: 'global'
  tags: tags
  kind: 'azurebot'
  sku: {
    name: botSku
  }
  properties: {
    displayName: botDisplayName
    endpoint: 'https://${functionApp.properties.defaultHostName}/${messagesRoute}'
    msaAppType: 'UserAssignedMSI'
    msaAppId: botIdentity.properties.clientId
    msaAppTenantId: botIdentity.properties.tenantId
    msaAppMSIResourceId: botIdentity.id
  }
}

// Two sites, so that each key can be regenerated (or leak) without the other. Neither accepts
// uploads: the bot ignores attachments. Direct Line 1.0 is off on both.
resource directLine 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'DirectLineChannel'
  location: 'global'
  properties: {
    channelName: 'DirectLineChannel'
    properties: {
      sites: [
        {
          // The worker's key (DirectLineSecret), used server to server only. Enhanced
          // authentication guards tokens handed to browsers (trusted origins, dl_ user ids); the
          // worker uses no token and no browser, so it is left off here.
          siteName: workerSiteName
          isEnabled: true
          isV1Enabled: false
          isV3Enabled: true
          isSecureSiteEnabled: false
          isBlockUserUploadEnabled: true
        }
        {
          // Browser clients: the app's token endpoint exchanges this key (DirectLineClientSecret)
          // for a conversation token; enhanced authentication binds each token to its user id
          // (which must start with dl_) and to one of the trusted origins.
          siteName: clientsSiteName
          isEnabled: true
          isV1Enabled: false
          isV3Enabled: true
          isSecureSiteEnabled: true
          trustedOrigins: directLineTrustedOrigins
          isBlockUserUploadEnabled: true
        }
      ]
    }
  }
}

// ----------------------------------------------------------------------------------- Key Vault

resource vault 'Microsoft.KeyVault/vaults@2026-05-15' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Azure RBAC for the data plane (no access policies): the app reads, nobody else by default.
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // A deleted secret or vault can be recovered, and nobody can purge it before the retention ends.
    enablePurgeProtection: true
    // Key Vault references are resolved by the platform, which has no VNet path to a private vault
    // here; the vault stays reachable with Entra ID tokens only (docs/deploy.md, "Network").
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }

  resource directLineWorkerKey 'secrets' = {
    name: 'direct-line-worker-key'
    properties: {
      contentType: 'Direct Line key of the worker site (DirectLineSecret)'
      value: filter(directLine.listChannelWithKeys().properties.properties.sites, site => site.siteName == workerSiteName)[0].key
    }
  }

  resource directLineClientKey 'secrets' = {
    name: 'direct-line-client-key'
    properties: {
      contentType: 'Direct Line key of the clients site (DirectLineClientSecret)'
      value: filter(directLine.listChannelWithKeys().properties.properties.sites, site => site.siteName == clientsSiteName)[0].key
    }
  }

  resource operationSigningKeySecret 'secrets' = {
    name: 'operation-signing-key'
    properties: {
      contentType: 'HMAC key of operation results (OperationSigningKey)'
      value: operationSigningKey
    }
  }

  resource handoffSigningKeySecret 'secrets' = {
    name: 'handoff-signing-key'
    properties: {
      contentType: 'HMAC key of handoff links (HandoffSigningKey)'
      value: handoffSigningKey
    }
  }
}

// ----------------------------------------------------------------- Private networking (optional)

resource virtualNetwork 'Microsoft.Network/virtualNetworks@2026-03-01' = if (privateNetworking) {
  name: virtualNetworkName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        virtualNetworkAddressPrefix
      ]
    }
    subnets: [
      {
        // Flex Consumption's VNet integration needs a subnet delegated to Microsoft.App/environments.
        name: appSubnetName
        properties: {
          addressPrefix: cidrSubnet(virtualNetworkAddressPrefix, 24, 0)
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: cidrSubnet(virtualNetworkAddressPrefix, 24, 1)
        }
      }
    ]
  }
}

// One private DNS zone per endpoint kind, linked to the VNet, so that the account's usual host
// names resolve to the private endpoints from inside it.
resource blobDnsZone 'Microsoft.Network/privateDnsZones@2024-06-01' = if (privateNetworking) {
  name: 'privatelink.blob.${environment().suffixes.storage}'
  location: 'global'
  tags: tags

  resource blobDnsZoneLink 'virtualNetworkLinks' = {
    name: virtualNetworkName
    location: 'global'
    tags: tags
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: virtualNetwork.id
      }
    }
  }
}

resource queueDnsZone 'Microsoft.Network/privateDnsZones@2024-06-01' = if (privateNetworking) {
  name: 'privatelink.queue.${environment().suffixes.storage}'
  location: 'global'
  tags: tags

  resource queueDnsZoneLink 'virtualNetworkLinks' = {
    name: virtualNetworkName
    location: 'global'
    tags: tags
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: virtualNetwork.id
      }
    }
  }
}

resource tableDnsZone 'Microsoft.Network/privateDnsZones@2024-06-01' = if (privateNetworking) {
  name: 'privatelink.table.${environment().suffixes.storage}'
  location: 'global'
  tags: tags

  resource tableDnsZoneLink 'virtualNetworkLinks' = {
    name: virtualNetworkName
    location: 'global'
    tags: tags
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: virtualNetwork.id
      }
    }
  }
}

resource cosmosDnsZone 'Microsoft.Network/privateDnsZones@2024-06-01' = if (privateNetworking) {
  name: 'privatelink.documents.azure.com'
  location: 'global'
  tags: tags

  resource cosmosDnsZoneLink 'virtualNetworkLinks' = {
    name: virtualNetworkName
    location: 'global'
    tags: tags
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: virtualNetwork.id
      }
    }
  }
}

resource blobPrivateEndpoint 'Microsoft.Network/privateEndpoints@2026-03-01' = if (privateNetworking) {
  name: 'pe-${storageAccountName}-blob'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'blob'
        properties: {
          privateLinkServiceId: storage.id
          groupIds: [
            'blob'
          ]
        }
      }
    ]
  }
  dependsOn: [
    virtualNetwork
  ]

  resource blobPrivateEndpointDns 'privateDnsZoneGroups' = {
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: 'blob'
          properties: {
            privateDnsZoneId: blobDnsZone.id
          }
        }
      ]
    }
  }
}

resource queuePrivateEndpoint 'Microsoft.Network/privateEndpoints@2026-03-01' = if (privateNetworking) {
  name: 'pe-${storageAccountName}-queue'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'queue'
        properties: {
          privateLinkServiceId: storage.id
          groupIds: [
            'queue'
          ]
        }
      }
    ]
  }
  dependsOn: [
    virtualNetwork
  ]

  resource queuePrivateEndpointDns 'privateDnsZoneGroups' = {
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: 'queue'
          properties: {
            privateDnsZoneId: queueDnsZone.id
          }
        }
      ]
    }
  }
}

resource tablePrivateEndpoint 'Microsoft.Network/privateEndpoints@2026-03-01' = if (privateNetworking) {
  name: 'pe-${storageAccountName}-table'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'table'
        properties: {
          privateLinkServiceId: storage.id
          groupIds: [
            'table'
          ]
        }
      }
    ]
  }
  dependsOn: [
    virtualNetwork
  ]

  resource tablePrivateEndpointDns 'privateDnsZoneGroups' = {
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: 'table'
          properties: {
            privateDnsZoneId: tableDnsZone.id
          }
        }
      ]
    }
  }
}

resource cosmosPrivateEndpoint 'Microsoft.Network/privateEndpoints@2026-03-01' = if (privateNetworking) {
  name: 'pe-${cosmosAccountName}-sql'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'sql'
        properties: {
          privateLinkServiceId: cosmos.id
          groupIds: [
            'Sql'
          ]
        }
      }
    ]
  }
  dependsOn: [
    virtualNetwork
  ]

  resource cosmosPrivateEndpointDns 'privateDnsZoneGroups' = {
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: 'sql'
          properties: {
            privateDnsZoneId: cosmosDnsZone.id
          }
        }
      ]
    }
  }
}

// ---------------------------------------------------------------------- Diagnostic settings
// Every resource's logs (category group allLogs: its audit logs and the rest) go to the workspace.

resource functionAppDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: functionApp
  properties: {
    workspaceId: logAnalytics.id
    logs: allLogs
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: storage::blobServices
  properties: {
    workspaceId: logAnalytics.id
    logs: allLogs
  }
}

resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: storage::queueServices
  properties: {
    workspaceId: logAnalytics.id
    logs: allLogs
  }
}

resource tableDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: storage::tableServices
  properties: {
    workspaceId: logAnalytics.id
    logs: allLogs
  }
}

resource cosmosDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: cosmos
  properties: {
    workspaceId: logAnalytics.id
    // One table per category (CDBDataPlaneRequests...), as Cosmos DB recommends.
    logAnalyticsDestinationType: 'Dedicated'
    logs: allLogs
  }
}

// Who read which secret, when (AuditEvent is in allLogs).
resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalytics.id
    logs: allLogs
  }
}

resource botDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: bot
  properties: {
    workspaceId: logAnalytics.id
    logs: allLogs
  }
}

// A separate resource, so that the bot (which needs the app's host name), the Direct Line channel
// and the vault's secrets exist first. Every setting that services/settings.py reads is here, with
// the names of local.settings.json.sample. Secrets are Key Vault references: the value in the app
// settings is only the secret's address.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    // Identity-based host storage (Functions docs, "Connecting to host storage with an identity"):
    // the account name stands for its blob, queue and table endpoints, and `managedidentity` with
    // no client id is the system-assigned identity. The queue triggers' connection
    // "AzureWebJobsStorage" reads the same settings; so does services/settings.py.
    AzureWebJobsStorage__accountName: storage.name
    AzureWebJobsStorage__credential: 'managedidentity'
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    // The system-assigned identity (no ClientId=...): the one holding monitoringRole.
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
    // The Python worker configures Azure Monitor (OpenTelemetry) before it imports the app, so the
    // host's invocation spans and the app's (services/telemetry.py) share a trace; host.json sets the
    // host's telemetryMode to match. Every trace kept whole: the distro's default keeps 5 a second,
    // deciding again at each hop, which tears a long operation's trace apart.
    PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
    OTEL_TRACES_SAMPLER: 'microsoft.fixed_percentage'
    OTEL_TRACES_SAMPLER_ARG: '1.0'
    MicrosoftAppType: 'UserAssignedMSI'
    MicrosoftAppId: botIdentity.properties.clientId
    MicrosoftAppPassword: ''
    MicrosoftAppTenantId: botIdentity.properties.tenantId
    ExpireAfterSeconds: string(expireAfterSeconds)
    CosmosDbEndpoint: cosmos.properties.documentEndpoint
    CosmosDbAuthKey: ''
    CosmosDbDatabaseId: cosmosDatabaseName
    CosmosDbConversationStateContainerId: conversationContainerName
    CosmosDbUserStateContainerId: userContainerName
    CosmosDbTimeToLive: string(cosmosTimeToLiveSeconds)
    OperationsQueueName: operationsQueueName
    OperationTimeoutSeconds: string(operationTimeoutSeconds)
    ProgressIntervalSeconds: '5'
    ProgressMessagesPerOperation: '2'
    DirectLineEndpoint: directLineEndpoint
    DirectLineSecret: '@Microsoft.KeyVault(SecretUri=${vault::directLineWorkerKey.properties.secretUri})'
    DirectLineClientSecret: '@Microsoft.KeyVault(SecretUri=${vault::directLineClientKey.properties.secretUri})'
    OperationSigningKey: '@Microsoft.KeyVault(SecretUri=${vault::operationSigningKeySecret.properties.secretUri})'
    HandoffSigningKey: '@Microsoft.KeyVault(SecretUri=${vault::handoffSigningKeySecret.properties.secretUri})'
    SweepSchedule: sweepSchedule
    ExpiryNoticeEnabled: expiryNoticeEnabled ? 'true' : 'false'
    ExpiryNoticeText: expiryNoticeText
    TranscriptsEnabled: transcriptsEnabled ? 'true' : 'false'
    TranscriptTableName: transcriptTableName
    TranscriptRetentionDays: string(transcriptRetentionDays)
    TranscriptRedactUserText: transcriptRedactUserText ? 'true' : 'false'
    HandoffTimeoutSeconds: string(handoffTimeoutSeconds)
    HandoffAfterMisunderstandings: string(handoffAfterMisunderstandings)
    CosmosDbReferenceContainerId: referenceContainerName
    ExternalEventsQueueName: externalEventsQueueName
    NotificationsPerSecond: notificationsPerSecond
    MaxRunningOperationsPerUser: string(maxRunningOperationsPerUser)
    OperationStartsPerUserPerHour: string(operationStartsPerUserPerHour)
    HealthCacheSeconds: '5'
  }
  dependsOn: [
    hostStorageRole
    operationsQueueRole
    operationsPoisonQueueRole
    externalEventsQueueRole
    externalEventsPoisonQueueRole
    transcriptTableRole
    cosmosDataRole
    monitoringRole
    keyVaultSecretsRole
    blobPrivateEndpoint
    queuePrivateEndpoint
    tablePrivateEndpoint
    cosmosPrivateEndpoint
  ]
}

// Names and addresses only: no key, secret or connection string.
output functionAppName string = functionApp.name
output functionAppHostName string = functionApp.properties.defaultHostName
output messagingEndpoint string = bot.properties.endpoint
output botName string = bot.name
output botAppId string = botIdentity.properties.clientId
output cosmosEndpoint string = cosmos.properties.documentEndpoint
output storageAccountName string = storage.name
output keyVaultName string = vault.name
output applicationInsightsName string = appInsights.name
